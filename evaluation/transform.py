"""Experiment C's rewards and scores (SPEC §3), shared by the RL environment, the BPTT baseline's
loss and the benchmark, so all three optimise and report exactly the same quantities.

Per step t = 1..T, for the image x_t a method produced on its way from x_s to the goal x_g:

    r_t = realism_weight · score(D(x_t)) − step_penalty
          + [last step] · (− distance_weight · dist(x_t, x_g) − [goal not reached] · max_step_penalty)

score = log sigmoid(D) (``log_prob``, non-saturating) or sigmoid(D) (``prob``); dist = pixel L2
``‖x − g‖₂`` or ``ae``: the RMS of the standardised AE-code difference. The last step is step T,
or the first step whose distance is ≤ ``goal_tolerance`` (when set: the episode ends early, the
goal counts as reached and no max-step penalty applies).
"""
import io
import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.runs import atomic_write_bytes, load_module


def _check(name: str, value: float, minimum: float = 0.0, strict: bool = False) -> float:
    value = float(value)
    if not (math.isfinite(value) and (value > minimum if strict else value >= minimum)):
        raise ValueError(f"{name}={value} invalid: expected a finite number {'>' if strict else '>='} {minimum}")
    return value


def check_objective(realism_weight: float, realism_score: str, distance: str, distance_weight: float,
                    step_penalty: float, max_step_penalty: float, goal_tolerance: Optional[float], steps: int) -> Dict[str, float]:
    """Validate the reward settings (one-line ValueErrors naming the value); return the four weights."""
    if realism_score not in ("log_prob", "prob"):
        raise ValueError(f"realism_score={realism_score!r} invalid: expected 'log_prob' or 'prob'")
    if distance not in ("l2", "ae"):
        raise ValueError(f"distance={distance!r} invalid: expected 'l2' or 'ae'")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps} invalid: expected an int >= 1")
    if goal_tolerance is not None:
        _check("goal_tolerance", goal_tolerance)
    return {k: _check(k, v) for k, v in (("realism_weight", realism_weight), ("distance_weight", distance_weight),
                                          ("step_penalty", step_penalty), ("max_step_penalty", max_step_penalty))}


class TransformObjective(nn.Module):
    """Frozen discriminator (+ AE encoder) and the reward weights of experiment C.

    Args:
        discriminator: image N×1×28×28 -> realism logit N (frozen).
        encoder: image -> AE code N×D, needed by ``distance='ae'`` and the AE-distance score.
        code_std_D: per-dimension std of training codes (standardises AE distances).
        realism_weight, distance_weight, step_penalty, max_step_penalty: ≥ 0.
        goal_tolerance: None (fixed T steps) or a distance ≤ which the episode ends early.
        steps: T ≥ 1.
    """

    def __init__(self, discriminator: nn.Module, encoder: Optional[nn.Module] = None,
                 code_std_D: Optional[torch.Tensor] = None, realism_weight: float = 1.0,
                 realism_score: str = "log_prob", distance: str = "l2", distance_weight: float = 2.0,
                 step_penalty: float = 0.0, max_step_penalty: float = 0.0, goal_tolerance: Optional[float] = None,
                 steps: int = 5):
        super().__init__()
        if distance == "ae" and (encoder is None or code_std_D is None):
            raise ValueError("distance='ae' needs the autoencoder: set ae_checkpoint")
        self.weights = check_objective(realism_weight=realism_weight, realism_score=realism_score, distance=distance,
                                       distance_weight=distance_weight, step_penalty=step_penalty,
                                       max_step_penalty=max_step_penalty, goal_tolerance=goal_tolerance, steps=steps)
        self.goal_tolerance = goal_tolerance
        self.realism_score, self.distance_kind, self.steps = realism_score, distance, int(steps)
        self.discriminator, self.encoder = discriminator, encoder
        self.register_buffer("code_std", None if code_std_D is None else code_std_D.float().clamp_min(1e-6))
        self.requires_grad_(False)
        self.eval()

    def realism_logit(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        """Discriminator logits N (differentiable w.r.t. the image)."""
        return self.discriminator(image_N1HW).reshape(-1)

    def distance(self, image_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, kind: Optional[str] = None) -> torch.Tensor:
        """N distances to the goal: ``l2`` = ‖x − g‖₂ over pixels; ``ae`` = RMS of the standardised code difference."""
        kind = kind or self.distance_kind
        if kind == "l2":
            return (image_N1HW - goal_N1HW).flatten(1).norm(dim=1)
        if self.encoder is None:
            raise ValueError("the AE distance needs an encoder (ae_checkpoint)")
        diff = (self.encoder(image_N1HW) - self.encoder(goal_N1HW)) / self.code_std
        return diff.pow(2).mean(1).sqrt()

    def step_reward(self, logit_N: torch.Tensor, distance_N: torch.Tensor,
                    step: Union[int, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reward N, reached N bool, last N bool) of step ``step`` (1-based; an int or one per row)
        from the image's realism logit and its distance to the goal; differentiable in both."""
        w = self.weights
        score = F.logsigmoid(logit_N) if self.realism_score == "log_prob" else torch.sigmoid(logit_N)
        reached = torch.zeros_like(distance_N, dtype=torch.bool) if self.goal_tolerance is None \
            else distance_N.detach() <= self.goal_tolerance
        last = reached | (torch.as_tensor(step, device=distance_N.device) >= self.steps)
        final = -w["distance_weight"] * distance_N - w["max_step_penalty"] * (~reached).float()
        reward = w["realism_weight"] * score - w["step_penalty"] + torch.where(last, final, torch.zeros_like(final))
        return reward, reached, last

    def trajectory_rewards(self, images_TN1HW: torch.Tensor, goal_N1HW: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Rewards of whole trajectories x_1..x_T (no early stop inside a method: steps after the
        episode's last one earn nothing). Returns T×N ``reward`` (masked), ``alive``, ``logit``, ``distance``."""
        alive = torch.ones(images_TN1HW.shape[1], dtype=torch.bool, device=images_TN1HW.device)
        out = {"reward": [], "alive": [], "logit": [], "distance": []}
        for t, image in enumerate(images_TN1HW, start=1):
            logit, dist = self.realism_logit(image), self.distance(image, goal_N1HW)
            reward, _, last = self.step_reward(logit, dist, t)
            for key, value in (("reward", reward * alive), ("alive", alive), ("logit", logit), ("distance", dist)):
                out[key].append(value)
            alive = alive & ~last
        return {k: torch.stack(v) for k, v in out.items()}


def build_objective(discriminator_checkpoint: str, ae_checkpoint: Optional[str], reference_images_N1HW: torch.Tensor,
                    **weights) -> TransformObjective:
    """The objective from checkpoints; AE codes are standardised with the std of ``reference_images``' codes."""
    disc = load_module(discriminator_checkpoint, "realism_discriminator")
    encoder, code_std = None, None
    if ae_checkpoint is not None:
        ae = load_module(ae_checkpoint, "autoencoder")
        encoder = ae.encoder
        with torch.inference_mode():
            code_std = torch.cat([encoder(c) for c in reference_images_N1HW.split(1024)]).std(0)
        code_std = code_std.clone()
    return TransformObjective(disc.net, encoder, code_std, **weights)


@torch.inference_mode()
def score_trajectories(images_TN1HW: torch.Tensor, goal_N1HW: torch.Tensor, objective: TransformObjective,
                       judge: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
    """Per-pair scores N of trajectories: ``return`` (the shared reward), ``final_l2``, ``final_ae``
    (when an encoder exists), ``realism`` (mean p(real) over x_1..x_T by the reward's discriminator),
    ``final_realism`` and, with ``judge`` (another discriminator), ``judge_realism``."""
    rewards = objective.trajectory_rewards(images_TN1HW, goal_N1HW)
    final = images_TN1HW[-1]
    scores = {"return": rewards["reward"].sum(0), "final_l2": objective.distance(final, goal_N1HW, "l2"),
              "realism": torch.sigmoid(rewards["logit"]).mean(0), "final_realism": torch.sigmoid(rewards["logit"][-1])}
    if objective.encoder is not None:
        scores["final_ae"] = objective.distance(final, goal_N1HW, "ae")
    if judge is not None:
        scores["judge_realism"] = torch.stack([torch.sigmoid(judge(x).reshape(-1)) for x in images_TN1HW]).mean(0)
    return scores


def save_strip(source_N1HW: torch.Tensor, images_TN1HW: torch.Tensor, goal_N1HW: torch.Tensor, path: Path) -> None:
    """PNG: one row per pair, columns x_s, x_1 .. x_T, x_g (atomic write)."""
    from torchvision.utils import save_image

    tiles = torch.cat([source_N1HW[None], images_TN1HW, goal_N1HW[None]]).transpose(0, 1).reshape(-1, 1, 28, 28)
    buf = io.BytesIO()
    save_image(tiles.float().clamp(0, 1), buf, format="png", nrow=images_TN1HW.shape[0] + 2, padding=2, pad_value=0.5)
    atomic_write_bytes(Path(path), buf.getvalue())


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear interpolation T×... from ``start`` (excluded) to ``end`` (included): (1 − t/T)·start + (t/T)·end."""
    alphas = torch.arange(1, steps + 1, dtype=start.dtype, device=start.device) / steps
    shape = (steps,) + (1,) * start.dim()
    return (1 - alphas.view(shape)) * start[None] + alphas.view(shape) * end[None]


def reference_trajectories(source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, steps: int,
                           autoencoder: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
    """The two trivial references: ``pixel_interp`` (linear in pixels) and, with an autoencoder,
    ``ae_interp`` (encode both, interpolate the codes, decode). Each T×N×1×28×28."""
    out = {"pixel_interp": interpolate(source_N1HW, goal_N1HW, steps)}
    if autoencoder is not None:
        with torch.inference_mode():
            codes = interpolate(autoencoder.encode(source_N1HW), autoencoder.encode(goal_N1HW), steps)
            out["ae_interp"] = autoencoder.decode(codes.flatten(0, 1)).view(steps, *source_N1HW.shape)
    return out


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and (population) std of a few per-seed values."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(t) > 1 else 0.0
