"""Experiment C's rewards and scores, shared by the RL environment, the BPTT baseline's loss and the
benchmark, so all three optimise and report exactly the same quantities (settings:
:class:`configs.schema.TransformRewards`).

Per step t = 1..T, for the image x_t a method produced on its way from x_s to the goal x_g:

    r_t = realism_weight · score(D(x_t)) − step_penalty
          + [last step] · (− distance_weight · dist(x_t, x_g) − [goal not reached] · max_step_penalty)

score = log sigmoid(D) (``log_prob``, non-saturating) or sigmoid(D) (``prob``); dist = pixel L2
``‖x − g‖₂`` or ``ae``: the RMS of the standardised AE-code difference. The last step is step T,
or the first step whose distance is ≤ ``goal_tolerance`` (when set: the episode ends early, the
goal counts as reached and no max-step penalty applies).
"""
import io
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from configs.schema import TransformRewards
from utils.errors import UserError
from utils.io import atomic_write_bytes


class TransformObjective(nn.Module):
    """Frozen discriminator (+ AE encoder) and the reward settings of experiment C.

    Args:
        discriminator: image N×1×28×28 -> realism logit N (frozen).
        encoder: image -> AE code N×D, needed by ``distance='ae'`` and the AE-distance score.
        code_std_D: per-dimension std of training codes (standardises AE distances).
        rewards: the weights, the distance, the number of steps T and the goal tolerance.
    """

    def __init__(self, discriminator: nn.Module, encoder: Optional[nn.Module] = None,
                 code_std_D: Optional[torch.Tensor] = None, rewards: Optional[TransformRewards] = None):
        super().__init__()
        rewards = TransformRewards() if rewards is None else rewards
        if rewards.distance == "ae" and (encoder is None or code_std_D is None):
            raise UserError("distance='ae' needs the autoencoder: set ae_checkpoint")
        self.rewards = rewards
        self.weights = {k: float(getattr(rewards, k)) for k in
                        ("realism_weight", "distance_weight", "step_penalty", "max_step_penalty")}
        self.goal_tolerance = rewards.goal_tolerance
        self.realism_score, self.distance_kind, self.steps = rewards.realism_score, rewards.distance, int(rewards.steps)
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
            raise UserError("the AE distance needs an encoder (ae_checkpoint)")
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
