"""Autoencoder system: 28×28 digit -> 32-d code -> 28×28, BCE loss (docs/experiment-b.md)."""
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import SharedStepModule
from lightning_modules.classifier import random_affine
from lightning_modules.nets.mnist import ConvDecoder, ConvEncoder
from utils.errors import UserError


class AutoencoderModule(SharedStepModule):
    """Convolutional AE; ``train_noise_std`` > 0 trains it as a denoising AE.

    Denoising matters downstream: the agent sees codes of (possibly noisy) inputs, and noise
    robustness has to live in the encoder (measured: docs/experiment-b.md).

    Not from the paper (the defaults keep the paper's AE): ``encoder_width`` w (encoder channels
    w-2w-2w; the paper's is 16), ``augment`` (a random rotation/scale/shift of each training digit,
    the reconstruction target included, before the denoising noise) and ``label_weight`` λ > 0 (a
    linear head on the code trained with λ·cross-entropy on the digit's label, so the digit's
    identity stays readable from the code; the head is not used downstream).
    """

    monitor = ("val/loss", "min")

    def __init__(self, code_dim: int = 32, lr: float = 1e-3, weight_decay: float = 0.0, train_noise_std: float = 0.0,
                 encoder_width: int = 16, augment: bool = False, label_weight: float = 0.0):
        super().__init__()
        if code_dim < 1:
            raise UserError(f"module.code_dim must be >= 1, got {code_dim}")
        if train_noise_std < 0:
            raise UserError(f"module.train_noise_std must be >= 0, got {train_noise_std}")
        if encoder_width < 1 or label_weight < 0:
            raise UserError(f"module.encoder_width must be >= 1 and module.label_weight >= 0, got "
                            f"{encoder_width}, {label_weight}")
        self.save_hyperparameters()
        self.encoder = ConvEncoder(code_dim, encoder_width)
        self.decoder = ConvDecoder(code_dim)
        if label_weight > 0:  # created only when used: the paper's AE keeps its parameters and RNG draws
            self.label_head = nn.Linear(code_dim, 10)

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        """Reconstruction N×1×28×28 in [0, 1]."""
        return self.decode(self.encode(image_N1HW))

    def encode(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        """image N×1×28×28 in [0, 1] -> code N×code_dim."""
        return self.encoder(image_N1HW)

    def decode(self, code_ND: torch.Tensor) -> torch.Tensor:
        """code N×code_dim -> image N×1×28×28 in [0, 1]."""
        return torch.sigmoid(self.decoder(code_ND))

    def predict_step(self, batch, batch_idx):
        return self.encode(batch["image"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        image, target = batch["image"], batch.get("clean", batch["image"])
        if stage == "train" and self.hparams.augment:
            target = image = random_affine(target, degrees=12.0, translate=0.08, scale=0.1)
        if stage == "train" and self.hparams.train_noise_std > 0:
            # Per-sample sigma in [0, train_noise_std]: the encoder sees clean and noisy inputs.
            sigma = torch.rand(len(image), 1, 1, 1, device=self.device) * self.hparams.train_noise_std
            image = (image + sigma * torch.randn_like(image)).clamp(0.0, 1.0)
        code = self.encoder(image)
        logits = self.decoder(code)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        mse = F.mse_loss(torch.sigmoid(logits), target)
        metrics, loss = {f"{stage}/bce": bce, f"{stage}/mse": mse}, bce
        if self.hparams.label_weight > 0 and "label" in batch:
            label_logits = self.label_head(code)
            ce = F.cross_entropy(label_logits, batch["label"])
            loss = bce + self.hparams.label_weight * ce
            metrics.update({f"{stage}/label_ce": ce,
                            f"{stage}/label_acc": (label_logits.argmax(1) == batch["label"]).float().mean()})
        metrics[f"{stage}/loss"] = loss
        self.log_dict(metrics, prog_bar=stage != "test", batch_size=len(image))
        return loss
