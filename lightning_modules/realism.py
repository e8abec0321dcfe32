"""Realism discriminator of experiment C: is an image a real MNIST digit? (docs/experiment-c.md)

Real = MNIST digits. Fake = the same batch corrupted on the fly, by kinds that look like what a
transformation may produce on its way from one digit to another (our choice, not from the paper):

- ``noise``: Gaussian pixel noise, sigma in [noise_min, noise_max], clipped to [0, 1];
- ``blur``: one or two 3×3 box blurs (soft, smeared strokes);
- ``mix``: a pixel-space blend α·x + (1 − α)·x' of two different digits, α in [mix_min, mix_max]:
  the ghosted overlays a linear pixel interpolation passes through;
- ``fade``: the digit scaled by s in [0, 0.5]: faint strokes down to a blank image (a blank image
  otherwise passes as real, and would be a free resting point between two digits);
- ``speckle``: strokes with pixels dropped (keep probability in [0.3, 0.75]): dotted or hatched
  strokes, the first artifact both the RL agents and the BPTT baseline used to fool a
  discriminator trained without it;
- ``blob``: smooth random shapes (bilinearly upsampled 7×7 noise through a steep sigmoid), i.e. ink
  that is not a digit.

A trained generator's samples would be another choice of fakes; corruptions need no extra stage
and cover the failure modes of pixel-space transitions. Any image unlike all of these may still
fool the discriminator: the benchmark scores realism with a second, independent discriminator
(another seed and width) beside the one inside the rewards.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy

from configs.schema import TransformRewards
from evaluation.transform import TransformObjective
from lightning_modules.base import SharedStepModule
from lightning_modules.checkpoints import load_module
from lightning_modules.nets.transform import RealismNet
from utils.errors import UserError

FAKE_KINDS = ("noise", "blur", "mix", "fade", "speckle", "blob")


def make_fakes(real_N1HW: torch.Tensor, kinds: List[str], noise_range=(0.1, 0.5), mix_range=(0.3, 0.7),
               generator: torch.Generator = None) -> torch.Tensor:
    """One corrupted copy per real image N×1×28×28 in [0, 1]; row i gets kind ``kinds[k_i]``, k_i uniform."""
    n, dev = len(real_N1HW), real_N1HW.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev)

    kind = (rand(n) * len(kinds)).long().clamp_max(len(kinds) - 1)
    out = real_N1HW.clone()
    for k, name in enumerate(kinds):
        rows = (kind == k).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        x = real_N1HW[rows]
        if name == "noise":
            sigma = noise_range[0] + (noise_range[1] - noise_range[0]) * rand(len(rows), 1, 1, 1)
            fake = x + sigma * torch.randn(x.shape, generator=generator, device=dev)
        elif name == "blur":
            once = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            twice = F.avg_pool2d(once, 3, stride=1, padding=1, count_include_pad=False)
            fake = torch.where(rand(len(rows), 1, 1, 1) < 0.5, once, twice)
        elif name == "mix":
            other = real_N1HW[(rows + 1 + (rand(len(rows)) * (n - 1)).long()) % n] if n > 1 else x.flip(-1)
            alpha = mix_range[0] + (mix_range[1] - mix_range[0]) * rand(len(rows), 1, 1, 1)
            fake = alpha * x + (1 - alpha) * other
        elif name == "fade":
            fake = 0.5 * rand(len(rows), 1, 1, 1) * x
        elif name == "speckle":
            keep = 0.3 + 0.45 * rand(len(rows), 1, 1, 1)
            fake = x * (rand(*x.shape) < keep).float()
        else:  # blob
            coarse = torch.randn(len(rows), 1, 7, 7, generator=generator, device=dev)
            fake = torch.sigmoid(6.0 * (F.interpolate(coarse, size=28, mode="bilinear", align_corners=False) - 1.0))
        out[rows] = fake.clamp(0.0, 1.0)
    return out


class RealismDiscriminatorModule(SharedStepModule):
    """Binary real/fake CNN on 28×28 digits; ``forward`` gives the realism logit (sigmoid = p(real))."""

    monitor = ("val/loss", "min")

    def __init__(self, width: int = 16, lr: float = 1e-3, weight_decay: float = 1e-4,
                 fakes: List[str] = list(FAKE_KINDS), noise_min: float = 0.1, noise_max: float = 0.5,
                 mix_min: float = 0.3, mix_max: float = 0.7):
        super().__init__()
        bad = [f for f in fakes if f not in FAKE_KINDS]
        if bad or not fakes:
            raise UserError(f"module.fakes={list(fakes)} invalid: expected a non-empty list of {list(FAKE_KINDS)}")
        if width < 1:
            raise UserError(f"module.width={width} invalid: expected an int >= 1")
        for lo, hi, name in ((noise_min, noise_max, "noise"), (mix_min, mix_max, "mix")):
            if not 0.0 <= lo <= hi <= 1.0:
                raise UserError(f"module.{name}_min={lo} / module.{name}_max={hi} invalid: expected 0 <= min <= max <= 1")
        self.save_hyperparameters()
        self.net = RealismNet(width)
        self.acc = nn.ModuleDict({f"{s}_acc": BinaryAccuracy() for s in ("train", "val", "test")})

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        """Realism logits N for images in [0, 1]."""
        return self.net(image_N1HW)

    def predict_step(self, batch, batch_idx):
        return torch.sigmoid(self(batch["image"]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        real = batch.get("clean", batch["image"])
        hp = self.hparams
        fake = make_fakes(real, list(hp.fakes), (hp.noise_min, hp.noise_max), (hp.mix_min, hp.mix_max))
        logits = self(torch.cat([real, fake]))
        target = torch.cat([torch.ones(len(real), device=self.device), torch.zeros(len(fake), device=self.device)])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        acc = self.acc[f"{stage}_acc"]
        acc(torch.sigmoid(logits), target.long())
        self.log(f"{stage}/loss", loss, batch_size=len(target))
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=len(target))
        return loss


def load_objective(discriminator_checkpoint: str, ae_checkpoint: Optional[str],
                   reference_images_N1HW: Optional[torch.Tensor], rewards: TransformRewards) -> TransformObjective:
    """Experiment C's rewards from checkpoints: the frozen discriminator (and, for ``ae`` distances, the AE
    encoder, its codes standardised with the std of ``reference_images``' codes)."""
    disc = load_module(discriminator_checkpoint, "realism_discriminator")
    encoder, code_std = None, None
    if ae_checkpoint is not None:
        encoder = load_module(ae_checkpoint, "autoencoder").encoder
        with torch.inference_mode():
            code_std = torch.cat([encoder(c) for c in reference_images_N1HW.split(1024)]).std(0)
        code_std = code_std.clone()
    return TransformObjective(disc.net, encoder, code_std, rewards)
