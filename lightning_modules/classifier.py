"""Digit classifier system: the reward classifier and, with another architecture, the judge."""
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import SharedStepModule
from lightning_modules.nets.mnist import CLASSIFIER_NETS
from utils.errors import UserError


def random_affine(image_NCHW: torch.Tensor, degrees: float, translate: float, scale: float) -> torch.Tensor:
    """Batched random rotation/scale/shift (one affine_grid call, no per-sample Python loop)."""
    n = image_NCHW.shape[0]
    dev = image_NCHW.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, device=dev) * 2 - 1) * scale
    shift = (torch.rand(n, 2, device=dev) * 2 - 1) * translate * 2  # grid coords span 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(image_NCHW.shape), align_corners=False)
    return F.grid_sample(image_NCHW, grid, align_corners=False, padding_mode="zeros")


class DigitClassifierModule(SharedStepModule):
    """MNIST classifier; ``arch`` picks the net (``small_cnn`` = reward model, ``judge_cnn`` = judge)."""

    monitor = ("val/acc", "max")

    def __init__(
        self,
        arch: Literal["small_cnn", "judge_cnn"] = "small_cnn",
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        augment: bool = True,
        label_smoothing: float = 0.0,
        width: int = 32,
    ):
        super().__init__()
        if width < 1:
            raise UserError(f"module.width must be >= 1, got {width}")
        self.save_hyperparameters()
        self.net = CLASSIFIER_NETS[arch](width=width)
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence the suffix.
        self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes=10, average="micro") for s in ("train", "val", "test")})

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        """Logits N×10 for images in [0, 1]."""
        return self.net(image_N1HW)

    def predict_step(self, batch, batch_idx):
        return self(batch["image"]).softmax(-1)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        # One-cycle over the whole run: the 5,000 offline digits need a decaying rate to reach ~99 %.
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr,
                                                    total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        image, label = batch["image"], batch["label"]
        if stage == "train" and self.hparams.augment:
            image = random_affine(image, degrees=12.0, translate=0.08, scale=0.1)
        logits = self(image)
        loss = F.cross_entropy(logits, label, label_smoothing=self.hparams.label_smoothing)
        acc = self.acc[f"{stage}_acc"]
        acc(logits, label)
        self.log(f"{stage}/loss", loss, batch_size=len(label))
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=len(label))
        return loss
