"""Face CNNs (plain ``nn.Module``s) for the age regressor and the gender classifier.

Backbones: ``small`` (a 4-stage CNN, the fast CPU default), torchvision ``resnet18`` and
``resnet50`` (the paper's). All take images N×3×H×W in [-1, 1] (the generators' range) and
resize them to ``input_size`` when they arrive at another size (e.g. 512×512 PGAN faces).
"""
import logging
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import MissingFileError, UserError

log = logging.getLogger(__name__)

BACKBONES = ("small", "resnet18", "resnet50")
FEATURE_GRID = 4  # features() pools the mid-level map to 4×4 cells before flattening
# ImageNet statistics: ResNets see ImageNet-normalised pixels so ImageNet weights fit.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallFaceCNN(nn.Module):
    """Four stride-2 stages (32-64-128-256 channels); ``mid`` = the first three, ``top`` = the last."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.mid = nn.Sequential(_conv_block(3, width), _conv_block(width, 2 * width),
                                 _conv_block(2 * width, 4 * width))
        self.top = _conv_block(4 * width, 8 * width)
        self.out_dim = 8 * width


def _resnet(name: str, pretrained_path: Optional[str]) -> nn.Module:
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)  # weights=None: never download
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise MissingFileError(f"pretrained_path '{pretrained_path}' does not exist (expected a torchvision "
                                   f"{name} ImageNet state dict, e.g. from torchvision's model zoo)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the head is ours
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as err:  # size mismatches raise even with strict=False
            raise UserError(f"'{pretrained_path}' does not fit torchvision {name}: "
                            f"{str(err).splitlines()[1].strip()} ...") from None
        bad = [k for k in missing if not k.startswith("fc.")]
        if bad or unexpected:
            raise UserError(f"'{pretrained_path}' does not fit torchvision {name}: missing {bad[:5]}, "
                            f"unexpected {list(unexpected)[:5]}")
        log.info("loaded %s ImageNet weights from %s", name, path)
    return net


class FaceNet(nn.Module):
    """Backbone + linear head: images N×3×H×W in [-1, 1] -> N×out_dim.

    Args:
        backbone: ``small``, ``resnet18`` or ``resnet50``.
        out_dim: head outputs (1 for age regression, 2 for gender logits).
        input_size: side the images are resized to before the backbone.
        pretrained_path: ImageNet weights file for a ResNet backbone (never downloaded here).
    """

    def __init__(self, backbone: str = "small", out_dim: int = 1, input_size: int = 64,
                 pretrained_path: Optional[str] = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise UserError(f"unknown backbone '{backbone}'; expected one of {list(BACKBONES)}")
        if backbone == "small" and pretrained_path is not None:
            raise UserError("pretrained_path applies to the ResNet backbones only, not 'small'")
        self.backbone, self.input_size = backbone, input_size
        if backbone == "small":
            net = SmallFaceCNN()
            self.mid, self.top, feat_dim = net.mid, net.top, net.out_dim
        else:
            r = _resnet(backbone, pretrained_path)
            # mid = up to layer3 (the "conv4" stage); top = layer4. The pool/fc of torchvision are dropped.
            self.mid = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
            self.top, feat_dim = r.layer4, r.fc.in_features
        self.head = nn.Linear(feat_dim, out_dim)
        use_imagenet = backbone != "small"
        mean = torch.tensor(IMAGENET_MEAN if use_imagenet else (0.5, 0.5, 0.5)).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD if use_imagenet else (0.5, 0.5, 0.5)).view(1, 3, 1, 1)
        # [-1, 1] -> [0, 1] -> (x - mean) / std; identity for 'small' (mean = std = 0.5).
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _prepare(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        if img_NCHW.ndim != 4 or img_NCHW.shape[1] != 3:
            raise UserError(f"images: expected shape (N, 3, H, W), got {tuple(img_NCHW.shape)}")
        if img_NCHW.shape[-2:] != (self.input_size, self.input_size):
            img_NCHW = F.interpolate(img_NCHW, size=(self.input_size, self.input_size), mode="bilinear",
                                     align_corners=False, antialias=True)
        return ((img_NCHW + 1.0) * 0.5 - self.mean) / self.std

    def embed(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Penultimate features N×F (global-average-pooled last stage), the head's input."""
        return self.top(self.mid(self._prepare(img_NCHW))).mean(dim=(2, 3))

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Images N×3×H×W in [-1, 1] -> head outputs N×out_dim."""
        return self.head(self.embed(img_NCHW))

    def features(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Mid-level perceptual features N×(C·4·4) of images N×3×H×W in [-1, 1].

        The output of the stage before the last (``small``: 128 ch; ResNet: layer3), average-
        pooled to a 4×4 grid and flattened. Like AlexNet conv5 in the paper's identity term
        (eq. 8, docs/experiment-a.md) it keeps spatial layout and appearance, and it sits below the layers
        that specialise in the trained attribute. C = 128 (small), 256 (resnet18), 1024 (resnet50).
        """
        fmap = self.mid(self._prepare(img_NCHW))
        return F.adaptive_avg_pool2d(fmap, FEATURE_GRID).flatten(1)

    def forward_and_features(self, img_NCHW: torch.Tensor, kind: str = "mid") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(forward(img), features(img))`` (``kind="mid"``) or ``(forward(img), embed(img))`` (``"embed"``) from
        one pass of the trunk: the same values as the separate calls, for half the work below the head."""
        mid = self.mid(self._prepare(img_NCHW))
        emb = self.top(mid).mean(dim=(2, 3))
        feats = F.adaptive_avg_pool2d(mid, FEATURE_GRID).flatten(1) if kind == "mid" else emb
        return self.head(emb), feats

    @property
    def feature_shape(self) -> Tuple[int, int, int]:
        channels = {"small": 128, "resnet18": 256, "resnet50": 1024}[self.backbone]
        return channels, FEATURE_GRID, FEATURE_GRID


class FaceNetEnsemble(nn.Module):
    """K independently initialised :class:`FaceNet` members behind FaceNet's interface (not from the paper).

    ``forward`` is the members' mean output; ``features`` and ``embed`` concatenate theirs (member-major), so an
    identity distance over them sums the members' distances. ``member_outputs`` gives each member's output for
    training each on its own loss (a deep ensemble: the members never see each other's predictions).

    Why: an editor that follows the gradient of one regressor finds the directions *that* network reads as age,
    many of which another network does not; directions that move every member's reading are more likely to move
    an independent judge's too.
    """

    def __init__(self, members: int, backbone: str = "small", out_dim: int = 1, input_size: int = 64,
                 pretrained_path: Optional[str] = None):
        super().__init__()
        if members < 2:
            raise UserError(f"members={members} invalid for an ensemble: expected an int >= 2 (1 is a plain FaceNet)")
        self.members = nn.ModuleList(FaceNet(backbone, out_dim, input_size, pretrained_path) for _ in range(members))
        self.backbone, self.input_size = backbone, input_size

    def member_outputs(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        """Head outputs K×N×out_dim, one slice per member."""
        return torch.stack([m(img_NCHW) for m in self.members])

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return self.member_outputs(img_NCHW).mean(0)

    def embed(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(img_NCHW) for m in self.members], 1)

    def features(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features(img_NCHW) for m in self.members], 1)

    def forward_and_features(self, img_NCHW: torch.Tensor, kind: str = "mid") -> Tuple[torch.Tensor, torch.Tensor]:
        outs, feats = zip(*(m.forward_and_features(img_NCHW, kind) for m in self.members))
        return torch.stack(outs).mean(0), torch.cat(feats, 1)

    @property
    def feature_shape(self) -> Tuple[int, int, int]:
        channels, h, w = self.members[0].feature_shape
        return channels * len(self.members), h, w


def build_face_net(members: int = 1, **kwargs) -> nn.Module:
    """A :class:`FaceNet` (``members`` = 1) or a :class:`FaceNetEnsemble` of ``members`` of them."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise UserError(f"members={members!r} invalid: expected an int >= 1")
    return FaceNet(**kwargs) if members == 1 else FaceNetEnsemble(members, **kwargs)
