"""Face attribute systems for experiment A (docs/experiment-a.md): an age regressor and a gender classifier.

Both take batches from ``datamodules.faces`` (``image`` N×3×H×W in [-1, 1], ``age`` N float
years, ``gender`` N int64 with 0 = male, 1 = female, -1 = unknown) and wrap a
``nets.faces.FaceNet``. ``Module.load_from_checkpoint(path)`` alone rebuilds either of them.

The age regressor plays the reward's ``A_reg``; its :meth:`AgeRegressorModule.features` is the
offline stand-in for the perceptual extractor F of the identity term (eq. 8). Evaluation must
judge with independent models (docs/experiment-a.md), never these.
"""
import logging
import math
from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import SharedStepModule
from lightning_modules.nets.faces import FaceNetEnsemble, build_face_net
from utils.errors import UserError

log = logging.getLogger(__name__)

Backbone = Literal["small", "resnet18", "resnet50"]
STAGES = ("train", "val", "test")


class _FaceAttributeModule(SharedStepModule):
    """Optimiser and checkpoint hooks shared by the two face systems, and their domain-adversarial option.

    Domain-adversarial training (not from the paper; Ganin & Lempitsky 2015), ``domain_weight`` > 0 in either
    system: each member also feeds its embedding of the photos and of as many generated faces to a small domain
    classifier through a gradient-reversal layer, so its trunk learns features that do not tell photos from the
    generator's faces while its head reads the attribute from them. The reversal's strength ramps from 0 to
    ``domain_weight`` over training (the DANN schedule). ``domain_generator`` (``lightning_modules.nets.generators``)
    gives the target domain: ``domain_pool`` faces drawn once (seed ``domain_seed``), sampled with replacement per
    batch. Only photos aged ``domain_min_age``-``domain_max_age`` enter the domain loss (all of them still train the
    head): a generator of adults matched against a photo set full of children would otherwise push the adults'
    features towards the children's.
    """

    def _init_domain(self) -> None:
        """Checks the ``domain_*`` settings and builds one domain classifier per member when ``domain_weight`` > 0."""
        hp = self.hparams
        if not (math.isfinite(hp.domain_weight) and hp.domain_weight >= 0):
            raise UserError(f"domain_weight={hp.domain_weight!r} invalid: expected a finite number >= 0")
        if hp.domain_weight > 0 and (hp.domain_pool < 1 or hp.domain_max_age <= hp.domain_min_age):
            raise UserError(f"domain_pool={hp.domain_pool!r} / domain ages [{hp.domain_min_age}, {hp.domain_max_age}] "
                            f"invalid: expected a pool >= 1 and domain_max_age > domain_min_age")
        if hp.domain_weight > 0:
            width = self.members()[0].head.in_features
            self.domain_heads = nn.ModuleList(nn.Sequential(nn.Linear(width, 128), nn.ReLU(inplace=True),
                                                            nn.Linear(128, 1)) for _ in self.members())
        self._domain_faces: Optional[torch.Tensor] = None  # the generated pool, drawn at the first training step

    def members(self) -> List[nn.Module]:
        """The networks whose mean is the output: the ensemble's members, or the one network."""
        return list(self.net.members) if isinstance(self.net, FaceNetEnsemble) else [self.net]

    def _generated_faces(self, n: int, device: torch.device) -> torch.Tensor:
        """n faces of ``domain_generator`` drawn from the seeded pool (random mirror images, like the photos)."""
        hp = self.hparams
        if self._domain_faces is None:
            from lightning_modules.nets.generators import build_generator

            gen = build_generator(hp.domain_generator)
            z = gen.sample(hp.domain_pool, torch.Generator().manual_seed(hp.domain_seed))
            with torch.no_grad():
                self._domain_faces = torch.cat([gen(c) for c in z.split(256)]).half()
            log.info("domain-adversarial training: %d faces of '%s' as the target domain (seed %d), "
                     "photos aged %g-%g in the domain loss", hp.domain_pool, hp.domain_generator, hp.domain_seed,
                     hp.domain_min_age, hp.domain_max_age)
        idx = torch.randint(len(self._domain_faces), (n,))
        faces = self._domain_faces[idx].float()
        flip = torch.rand(n) < 0.5
        faces[flip] = faces[flip].flip(-1)
        return faces.to(device)

    def _adversarial_pass(self, photos: torch.Tensor, ages: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Member head outputs K×N×out on the photos, and the domain loss of photos (those in the age range, all of
        them when ``ages`` is None) against generated faces.

        Photos and generated faces go through each trunk in one batch, so batch-norm statistics are those of both
        domains (the model is used on generated faces); only the photos' outputs train the attribute head.
        """
        hp = self.hparams
        n = len(photos)
        faces = self._generated_faces(n, photos.device)
        # Ramp of the reversal's strength (the DANN schedule): 0 at the start, ~domain_weight by the end
        # (the full weight when called outside a Trainer).
        progress = 1.0
        if self._trainer is not None:
            progress = min(self.global_step / max(int(self.trainer.estimated_stepping_batches), 1), 1.0)
        strength = hp.domain_weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
        keep = torch.ones(n, dtype=torch.bool, device=photos.device) if ages is None else (
            (ages >= hp.domain_min_age) & (ages <= hp.domain_max_age))
        labels = torch.cat([torch.zeros(int(keep.sum())), torch.ones(n)]).to(photos.device)
        outputs, losses = [], []
        for member, head in zip(self.members(), self.domain_heads):
            emb = member.embed(torch.cat([photos, faces]))
            outputs.append(member.head(emb[:n]))
            domain_in = _ReverseGradient.apply(torch.cat([emb[:n][keep], emb[n:]]), strength)
            losses.append(F.binary_cross_entropy_with_logits(head(domain_in).squeeze(1), labels))
        return torch.stack(outputs), torch.stack(losses).mean()

    def _member_outputs(self, images: torch.Tensor, ages: Optional[torch.Tensor], stage: str):
        """Head outputs K×N×out of the K members (K = 1 for one net), and the domain loss (``None`` unless training
        with ``domain_weight`` > 0, when it is also logged)."""
        if stage != "train" or self.hparams.domain_weight == 0:
            return torch.stack([member(images) for member in self.members()]), None
        outputs, domain_loss = self._adversarial_pass(images, ages)
        self.log("train/domain_loss", domain_loss, on_step=True, on_epoch=True, batch_size=len(images))
        return outputs, domain_loss

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
        domain_weight, domain_generator, domain_pool, domain_seed, domain_min_age, domain_max_age: domain-adversarial
            training towards the generator's faces (not from the paper; see ``_FaceAttributeModule``); 0 (default)
            trains on photos only.
    """

    monitor = ("val/mae", "min")

    def __init__(self, backbone: Backbone = "small", lr: float = 1e-3, weight_decay: float = 1e-4,
                 loss: Literal["l1", "smooth_l1"] = "smooth_l1", scheduler: Literal["cosine", "none"] = "cosine",
                 input_size: int = 64, pretrained_path: Optional[str] = None,
                 age_offset: float = 30.0, age_scale: float = 20.0, members: int = 1,
                 domain_weight: float = 0.0, domain_generator: str = "dcgan_digiface", domain_pool: int = 8192,
                 domain_seed: int = 0, domain_min_age: float = 18.0, domain_max_age: float = 70.0):
        super().__init__()
        self.save_hyperparameters()
        if loss not in ("l1", "smooth_l1"):
            raise UserError(f"loss must be 'l1' or 'smooth_l1', got {loss!r}")
        self.net = build_face_net(members, backbone=backbone, out_dim=1, input_size=input_size,
                                  pretrained_path=pretrained_path)
        self._init_domain()
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
        # each member on its own loss (a deep ensemble), the metric on their mean
        outputs, domain_loss = self._member_outputs(batch["image"], batch["age"], stage)
        member_ages = hp.age_offset + hp.age_scale * outputs.squeeze(2)
        pred = member_ages.mean(0)
        target = batch["age"].to(pred.dtype)
        loss_fn = F.l1_loss if hp.loss == "l1" else F.smooth_l1_loss
        loss = loss_fn(member_ages, target.expand_as(member_ages))
        if domain_loss is not None:
            loss = loss + domain_loss
        mae = getattr(self, f"{stage}_mae")
        mae(pred.detach(), target)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(target))
        self.log(f"{stage}/mae", mae, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target))
        return loss


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-strength`` backward (the gradient-reversal layer)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


class GenderClassifierModule(_FaceAttributeModule):
    """Two-way gender classifier (0 = male, 1 = female); targets of -1 (unknown) are ignored.

    Args: as :class:`AgeRegressorModule` (no age scaling), plus ``label_smoothing`` of the cross-entropy.
    ``forward`` gives logits N×2, the members' mean logits for an ensemble (``members`` >= 2, each member trained
    on its own loss); ``predict_step`` P(female) N.
    """

    monitor = ("val/acc", "max")

    def __init__(self, backbone: Backbone = "small", lr: float = 1e-3, weight_decay: float = 1e-4,
                 scheduler: Literal["cosine", "none"] = "cosine", input_size: int = 64,
                 pretrained_path: Optional[str] = None, label_smoothing: float = 0.0, members: int = 1,
                 domain_weight: float = 0.0, domain_generator: str = "dcgan_digiface", domain_pool: int = 8192,
                 domain_seed: int = 0, domain_min_age: float = 18.0, domain_max_age: float = 70.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_face_net(members, backbone=backbone, out_dim=2, input_size=input_size,
                                  pretrained_path=pretrained_path)
        self._init_domain()
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
        # each member on its own loss (a deep ensemble), the metric on their mean logits
        outputs, domain_loss = self._member_outputs(batch["image"], batch.get("age"), stage)
        logits = outputs.mean(0)
        target = batch["gender"].long()
        if (target >= 0).any():
            member_target = target.repeat(len(outputs))
            loss = F.cross_entropy(outputs.flatten(0, 1), member_target, ignore_index=-1,
                                   label_smoothing=self.hparams.label_smoothing)
        else:  # a batch of unknowns only: cross_entropy would be NaN (mean over nothing)
            loss = outputs.sum() * 0.0
        if domain_loss is not None:
            loss = loss + domain_loss
        acc = getattr(self, f"{stage}_acc")
        acc(logits.detach(), target)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(target))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target))
        return loss
