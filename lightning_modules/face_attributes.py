"""Face attribute systems for experiment A (docs/experiment-a.md): an age regressor and a gender classifier.

Both take batches from ``datamodules.faces`` (``image`` N×3×H×W in [-1, 1], ``age`` N float
years, ``gender`` N int64 with 0 = male, 1 = female, -1 = unknown) and wrap a
``nets.faces.FaceNet``. ``Module.load_from_checkpoint(path)`` alone rebuilds either of them.

The age regressor plays the reward's ``A_reg``; its :meth:`AgeRegressorModule.features` is the
offline stand-in for the perceptual extractor F of the identity term (eq. 8). Evaluation must
judge with independent models (docs/experiment-a.md), never these.
"""
import logging
from typing import Any, Dict, Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import SharedStepModule
from lightning_modules.nets.faces import build_face_net
from utils.errors import UserError

log = logging.getLogger(__name__)

Backbone = Literal["small", "resnet18", "resnet50"]
STAGES = ("train", "val", "test")


class _FaceAttributeModule(SharedStepModule):
    """Optimiser and checkpoint hooks shared by the two face systems."""

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        epochs = self.trainer.max_epochs if self._trainer is not None else None
        if hp.scheduler == "cosine" and epochs is not None and epochs > 0:
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)}
        return opt

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # The ImageNet weights are already inside the state dict: forget the file so that
        # load_from_checkpoint works where that file does not exist.
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None and "pretrained_path" in hparams:
            hparams["pretrained_path"] = None


class AgeRegressorModule(_FaceAttributeModule):
    """Age in years from a face image (the reward's ``A_reg``).

    Args:
        backbone: ``small`` (fast CPU default), ``resnet18`` or ``resnet50`` (the paper's).
        lr, weight_decay: AdamW settings.
        loss: ``l1`` or ``smooth_l1`` (Huber with beta 1 year) on years.
        scheduler: ``cosine`` annealing over ``trainer.max_epochs``, or ``none``.
        input_size: side images are resized to (64 = the offline DCGAN's output).
        pretrained_path: ImageNet weights file for a ResNet backbone (offline: ``None``).
        age_offset, age_scale: years = offset + scale · raw head output, so that the raw output
            stays O(1) at initialisation (faster, steadier training than regressing raw years).
        members: 1, or K >= 2 for a deep ensemble (not from the paper): K networks of the backbone, each
            initialised and trained on its own loss; the age is their mean and the features concatenate
            theirs (``nets.faces.FaceNetEnsemble``). Training and every reading cost K times as much.
    """

    monitor = ("val/mae", "min")

    def __init__(self, backbone: Backbone = "small", lr: float = 1e-3, weight_decay: float = 1e-4,
                 loss: Literal["l1", "smooth_l1"] = "smooth_l1", scheduler: Literal["cosine", "none"] = "cosine",
                 input_size: int = 64, pretrained_path: Optional[str] = None,
                 age_offset: float = 30.0, age_scale: float = 20.0, members: int = 1):
        super().__init__()
        self.save_hyperparameters()
        if loss not in ("l1", "smooth_l1"):
            raise UserError(f"loss must be 'l1' or 'smooth_l1', got {loss!r}")
        self.net = build_face_net(members, backbone=backbone, out_dim=1, input_size=input_size,
                                  pretrained_path=pretrained_path)
        self.train_mae, self.val_mae, self.test_mae = (MeanAbsoluteError() for _ in STAGES)

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Images N×3×H×W in [-1, 1] -> predicted ages N (years)."""
        return self.hparams.age_offset + self.hparams.age_scale * self.net(img_NCHW).squeeze(1)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Predicted ages N for a dict batch (or a bare image tensor)."""
        return self(batch["image"] if isinstance(batch, dict) else batch)

    def features(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Perceptual features N×F for the identity term I_g (eq. 8, docs/experiment-a.md), offline substitute.

        Mid-level maps of this network (the stage before the last, pooled to 4×4, flattened;
        F = 2048 for ``small``); see ``FaceNet.features``. Use AlexNet conv5 when ImageNet
        weights are available, as in the paper.
        """
        return self.net.features(img_NCHW)

    def age_and_features(self, img_NCHW: torch.Tensor, kind: str = "mid") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(self(img), self.features(img))`` (``kind="mid"``) or with the penultimate embedding (``"embed"``),
        from one pass of the network's trunk (the env measures both on every step)."""
        out, feats = self.net.forward_and_features(img_NCHW, kind)
        return self.hparams.age_offset + self.hparams.age_scale * out.squeeze(1), feats

    def _shared_step(self, batch: Dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        hp = self.hparams
        if hp.members == 1:
            member_ages = self(batch["image"]).unsqueeze(0)
        else:  # each member on its own loss (a deep ensemble), the metric on their mean
            member_ages = hp.age_offset + hp.age_scale * self.net.member_outputs(batch["image"]).squeeze(2)
        pred = member_ages.mean(0)
        target = batch["age"].to(pred.dtype)
        loss_fn = F.l1_loss if hp.loss == "l1" else F.smooth_l1_loss
        loss = loss_fn(member_ages, target.expand_as(member_ages))
        mae = getattr(self, f"{stage}_mae")
        mae(pred.detach(), target)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(target))
        self.log(f"{stage}/mae", mae, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target))
        return loss


class GenderClassifierModule(_FaceAttributeModule):
    """Two-way gender classifier (0 = male, 1 = female); targets of -1 (unknown) are ignored.

    Args: as :class:`AgeRegressorModule` (no age scaling), plus ``label_smoothing`` of the
    cross-entropy. ``forward`` gives logits N×2; ``predict_step`` P(female) N.
    """

    monitor = ("val/acc", "max")

    def __init__(self, backbone: Backbone = "small", lr: float = 1e-3, weight_decay: float = 1e-4,
                 scheduler: Literal["cosine", "none"] = "cosine", input_size: int = 64,
                 pretrained_path: Optional[str] = None, label_smoothing: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_face_net(backbone=backbone, out_dim=2, input_size=input_size, pretrained_path=pretrained_path)
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes=2, average="micro", ignore_index=-1) for _ in STAGES
        )

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Images N×3×H×W in [-1, 1] -> logits N×2 (index 1 = female)."""
        return self.net(img_NCHW)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """P(female) N for a dict batch (or a bare image tensor)."""
        return self(batch["image"] if isinstance(batch, dict) else batch).softmax(dim=1)[:, 1]

    def _shared_step(self, batch: Dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        target = batch["gender"].long()
        if (target >= 0).any():
            loss = F.cross_entropy(logits, target, ignore_index=-1, label_smoothing=self.hparams.label_smoothing)
        else:  # a batch of unknowns only: cross_entropy would be NaN (mean over nothing)
            loss = logits.sum() * 0.0
        acc = getattr(self, f"{stage}_acc")
        acc(logits.detach(), target)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(target))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target))
        return loss
