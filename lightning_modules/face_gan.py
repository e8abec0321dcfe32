"""A face generator trained on photos (experiment A's photo-like generator; docs/experiment-a.md).

The DCGAN-tutorial pair (Radford et al.'s architecture as in the PyTorch tutorial): G maps z ~ N(0, I_nz)
to 64×64 faces, D scores faces. Non-saturating GAN loss, one D and one G step per batch (manual
optimization), real targets smoothed to ``real_label``. Trained by ``python -m lightning_modules.fit face_gan``
on the UTKFace training split; the frozen G is then an experiment-A generator (``env.generator=runs/face_gan``).

Why: age models trained on photos read the faces of a generator trained on renders of synthetic heads
inconsistently, so the independent judge saw little of the age the reward paid for; on the faces of a
generator trained on photos they agree far better (benchmarks/RESULTS.md).

Validation and test log ``fd``: the Fréchet distance between the photos of that split and as many
generated faces, on the images average-pooled to 8×8 (192 values): a cheap check that the faces'
colours and layout match the photos'. It is a sanity check, not an image-quality score, and does not pick
the checkpoint: a GAN's last weights are used (``monitor`` is none).
"""
import torch
import torch.nn.functional as F

from evaluation.metrics import FrechetDistance
from lightning_modules.base import DistributedLogging
from lightning_modules.nets.generators import DCGANDiscriminator, DCGANGenerator, dcgan_init
from utils.errors import UserError

RESOLUTION = 64  # the DCGAN pair's image side
FD_POOL = 8  # the Fréchet distance reads images pooled to FD_POOL × FD_POOL


class FaceGANModule(DistributedLogging):
    """DCGAN on face photos: ``nz``-d latents, ``ngf`` / ``ndf`` channels in G / D (the tutorial's 64)."""

    monitor = (None, "min")  # keep the last weights: a GAN's losses do not say which epoch is best

    def __init__(self, nz: int = 100, ngf: int = 32, ndf: int = 32, lr: float = 2e-4, beta1: float = 0.5,
                 real_label: float = 0.9):
        super().__init__()
        if nz < 1 or ngf < 1 or ndf < 1:
            raise UserError(f"nz, ngf and ndf must be >= 1, got {nz}, {ngf}, {ndf}")
        if not 0.5 < real_label <= 1.0:
            raise UserError(f"real_label={real_label} invalid: expected a target in (0.5, 1] for real photos")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = DCGANGenerator(nz=nz, ngf=ngf)
        self.discriminator = DCGANDiscriminator(ndf=ndf)
        self.generator.apply(dcgan_init)
        self.discriminator.apply(dcgan_init)
        self.fd = torch.nn.ModuleDict({s: FrechetDistance(3 * FD_POOL * FD_POOL) for s in ("val", "test")})

    def forward(self, z_NK: torch.Tensor) -> torch.Tensor:
        """z N×nz -> faces N×3×64×64 in [-1, 1]."""
        return self.generator(z_NK[:, :, None, None])

    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.hparams.nz, device=self.device)

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        res = getattr(getattr(dm, "hparams", None), "resolution", RESOLUTION)
        if res != RESOLUTION:
            raise UserError(f"data.resolution={res}: the face GAN makes {RESOLUTION}×{RESOLUTION} faces, "
                            f"set data.resolution={RESOLUTION}")

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = batch["image"]
        n = len(real)
        fake = self(self.sample_z(n))
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, self.hparams.real_label))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        d_gen = self.discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True, batch_size=n)

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def _shared_step(self, batch, stage: str) -> None:
        real = batch["image"]
        fake = self(self.sample_z(len(real)))
        for images, is_real in ((real, True), (fake, False)):
            self.fd[stage].update(F.adaptive_avg_pool2d(images, FD_POOL).flatten(1), real=is_real)
        self.log(f"{stage}/fd", self.fd[stage], prog_bar=True, batch_size=len(real))

    def configure_optimizers(self):
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return opt_g, opt_d
