"""Latent GAN system (l-GAN): G maps z ~ N(0, I_k) to AE codes; D scores codes (docs/experiment-b.md).

Hinge loss with a spectral-normalised D, manual optimization (one D and one G step per batch).
Codes are standardised with the training codes' mean/std (buffers, saved in the checkpoint), so
G and D work on unit-scale data whatever the AE's code scale is.
"""
import torch
import torch.nn.functional as F

from evaluation.metrics import FrechetDistance
from lightning_modules.base import DistributedLogging
from lightning_modules.nets.mnist import LatentDiscriminator, LatentGenerator
from utils.errors import UserError


class LatentGANModule(DistributedLogging):
    """l-GAN over ``code_dim``-d AE codes with a ``z_dim``-d latent (the paper: 2 or 5)."""

    monitor = ("val/fd", "min")

    def __init__(self, z_dim: int = 5, code_dim: int = 32, hidden: int = 256, lr_g: float = 2e-4,
                 lr_d: float = 2e-4, beta1: float = 0.5, d_steps: int = 1):
        super().__init__()
        if z_dim < 1 or code_dim < 1 or d_steps < 1:
            raise UserError(f"z_dim, code_dim and d_steps must be >= 1, got {z_dim}, {code_dim}, {d_steps}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = LatentGenerator(z_dim, code_dim, hidden)
        self.discriminator = LatentDiscriminator(code_dim, hidden)
        self.register_buffer("code_mean", torch.zeros(code_dim))
        self.register_buffer("code_std", torch.ones(code_dim))
        self.fd = torch.nn.ModuleDict({s: FrechetDistance(code_dim) for s in ("val", "test")})

    def forward(self, z_NK: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`generate`."""
        return self.generate(z_NK)

    def generate(self, z_NK: torch.Tensor) -> torch.Tensor:
        """z N×z_dim -> AE code N×code_dim."""
        return self.code_mean + self.code_std * self.generator(z_NK)

    def realism(self, code_ND: torch.Tensor) -> torch.Tensor:
        """D's score N for AE codes (hinge-trained: > 1 looks real, < -1 looks fake)."""
        return self.discriminator((code_ND - self.code_mean) / self.code_std)

    def sample_z(self, n: int, generator: torch.Generator = None) -> torch.Tensor:
        return torch.randn(n, self.hparams.z_dim, generator=generator, device=self.device)

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = (batch["code"] - self.code_mean) / self.code_std
        for _ in range(self.hparams.d_steps):
            fake = self.generator(self.sample_z(len(real))).detach()
            d_loss = F.relu(1 - self.discriminator(real)).mean() + F.relu(1 + self.discriminator(fake)).mean()
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
        g_loss = -self.discriminator(self.generator(self.sample_z(len(real)))).mean()
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True, batch_size=len(real))

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def configure_optimizers(self):
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr_g, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr_d, betas=betas)
        return opt_g, opt_d

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "code_mean") and dm.code_mean.shape != self.code_mean.shape:
            source = getattr(getattr(dm, "hparams", None), "ae_checkpoint", "the data")
            raise UserError(f"module.code_dim={self.hparams.code_dim} but the autoencoder '{source}' makes "
                            f"{dm.code_mean.numel()}-d codes: set module.code_dim={dm.code_mean.numel()}")
        if dm is not None and hasattr(dm, "code_mean") and self.global_step == 0:
            self.code_mean.copy_(dm.code_mean)
            self.code_std.copy_(dm.code_std)

    def _shared_step(self, batch, stage: str) -> None:
        real = batch["code"]
        fake = self.generate(self.sample_z(len(real)))
        self.fd[stage].update(real, real=True)
        self.fd[stage].update(fake, real=False)
        self.log(f"{stage}/fd", self.fd[stage], prog_bar=True, batch_size=len(real))
        self.log(f"{stage}/d_real", self.realism(real).mean(), batch_size=len(real))
        self.log(f"{stage}/d_fake", self.realism(fake).mean(), batch_size=len(real))
