"""Experiment A's evaluation metrics (docs/experiment-a.md): plain functions + thin torchmetrics classes.

Shapes: N base faces, T trajectory steps, F embedding size. Conventions shared with the env
(``rl/envs/face_age.py``): ``direction`` 0 = ascending (older), 1 = descending (younger); gender
as ``p_female`` with 0 = male, 1 = female; a face is female when ``p_female >= threshold``.
The metric classes keep sum states (and min/max states reduced with min/max), never list states.
"""
import logging
import math
from typing import Callable, Dict, Optional

import torch
from torchmetrics import Metric

log = logging.getLogger(__name__)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def identity_distance(feat_NF: torch.Tensor, base_feat_NF: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``I_g = ‖F(G(s_t)) − F(G(s_base))‖²`` per row, N float."""
    return (feat_NF.float() - base_feat_NF.float()).pow(2).flatten(1).sum(1)


def identity_cosines(base_emb_NF: torch.Tensor, traj_emb_NTF: torch.Tensor) -> torch.Tensor:
    """Cosine N×T between each base face's embedding (N×F) and every step of its trajectory (N×T×F)."""
    _check(base_emb_NF.ndim == 2 and traj_emb_NTF.ndim == 3 and base_emb_NF.shape[0] == traj_emb_NTF.shape[0]
           and base_emb_NF.shape[1] == traj_emb_NTF.shape[2],
           f"expected base N×F and trajectory N×T×F embeddings, got {tuple(base_emb_NF.shape)} and "
           f"{tuple(traj_emb_NTF.shape)}")
    base, traj = base_emb_NF.double(), traj_emb_NTF.double()
    return torch.nn.functional.cosine_similarity(traj, base[:, None, :], dim=2, eps=1e-12).to(base_emb_NF.dtype)


def cosine_summary(cos: torch.Tensor) -> Dict[str, float]:
    """Mean / Std (population, ddof=0) / Min / Max over every entry (the paper's Table 2 layout)."""
    _check(cos.numel() > 0, "cosine_summary needs at least one (base, step) pair")
    x = cos.double().flatten()
    return {"Mean": x.mean().item(), "Std": x.std(unbiased=False).item(), "Min": x.min().item(), "Max": x.max().item()}


class IdentityCosine(Metric):
    """Identity cosine over every (base, step) pair; ``compute()`` -> dict Mean / Std / Min / Max."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("count", "total", "total_sq"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("min_val", torch.tensor(math.inf, dtype=torch.float64), dist_reduce_fx="min")
        self.add_state("max_val", torch.tensor(-math.inf, dtype=torch.float64), dist_reduce_fx="max")

    def update(self, base_emb_NF: torch.Tensor, traj_emb_NTF: torch.Tensor) -> None:
        cos = identity_cosines(base_emb_NF.detach(), traj_emb_NTF.detach()).double().flatten().to(self.total.device)
        if cos.numel() == 0:
            return
        self.count += cos.numel()
        self.total += cos.sum()
        self.total_sq += cos.pow(2).sum()
        self.min_val = torch.minimum(self.min_val, cos.min())
        self.max_val = torch.maximum(self.max_val, cos.max())

    def compute(self) -> Dict[str, torch.Tensor]:
        _check(self.count > 0, "IdentityCosine.compute() before any (base, step) pair was added")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.pow(2)).clamp_min(0)  # float64 keeps the cancellation small
        return {"Mean": mean, "Std": var.sqrt(), "Min": self.min_val, "Max": self.max_val}


def _gender_changes(base_p_female_N: torch.Tensor, traj_p_female_NT: torch.Tensor, threshold: float) -> torch.Tensor:
    _check(base_p_female_N.ndim == 1 and traj_p_female_NT.ndim == 2 and len(base_p_female_N) == len(traj_p_female_NT),
           f"expected base p_female N and trajectory p_female N×T, got {tuple(base_p_female_N.shape)} and "
           f"{tuple(traj_p_female_NT.shape)}")
    _check(0.0 < threshold < 1.0, f"threshold must lie in (0, 1), got {threshold}")
    return (traj_p_female_NT >= threshold) != (base_p_female_N >= threshold)[:, None]


def flip_curve(base_p_female_N: torch.Tensor, traj_p_female_NT: torch.Tensor, threshold: float = 0.5,
               cumulative: bool = False) -> torch.Tensor:
    """T float: share of trajectories whose gender at step t differs from the base's.

    ``cumulative=True``: share flipped at *any* step ≤ t (its last entry is :func:`gender_flip_rate`).
    """
    changed = _gender_changes(base_p_female_N, traj_p_female_NT, threshold)
    if cumulative:
        changed = changed.cummax(dim=1).values
    return changed.double().mean(0) if len(changed) else torch.full((changed.shape[1],), math.nan)


def gender_flips(base_p_female_N: torch.Tensor, traj_p_female_NT: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """N bool: the trajectory's predicted gender (``p >= threshold``) differs from the base's at some step."""
    return _gender_changes(base_p_female_N, traj_p_female_NT, threshold).any(1)


def gender_flip_rate(base_p_female_N: torch.Tensor, traj_p_female_NT: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of trajectories whose predicted gender (``p >= threshold``) differs from the base at ANY step."""
    changed = _gender_changes(base_p_female_N, traj_p_female_NT, threshold)
    _check(changed.numel() > 0, "gender_flip_rate needs at least one trajectory with at least one step")
    return changed.any(1).double().mean().item()


class GenderFlipRate(Metric):
    """Gender-flip rate over trajectories; with ``num_steps`` also the per-step curve (:meth:`curve`)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, threshold: float = 0.5, num_steps: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        _check(0.0 < threshold < 1.0, f"threshold must lie in (0, 1), got {threshold}")
        _check(num_steps is None or num_steps >= 1, f"num_steps must be None or >= 1, got {num_steps}")
        self.threshold, self.num_steps = threshold, num_steps
        self.add_state("flipped", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("step_flipped", torch.zeros(num_steps or 0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, base_p_female_N: torch.Tensor, traj_p_female_NT: torch.Tensor) -> None:
        changed = _gender_changes(base_p_female_N.detach(), traj_p_female_NT.detach(), self.threshold)
        if self.num_steps is not None:
            _check(changed.shape[1] == self.num_steps,
                   f"GenderFlipRate(num_steps={self.num_steps}) got trajectories of {changed.shape[1]} steps")
            self.step_flipped += changed.double().sum(0).to(self.step_flipped.device)
        self.flipped += changed.any(1).double().sum().to(self.flipped.device)
        self.total += len(changed)

    def compute(self) -> torch.Tensor:
        _check(self.total > 0, "GenderFlipRate.compute() before any trajectory was added")
        return self.flipped / self.total

    def curve(self) -> torch.Tensor:
        """T float64: share of trajectories whose gender at step t differs from the base's."""
        _check(self.num_steps is not None, "GenderFlipRate.curve() needs num_steps at construction")
        return self.step_flipped / self.total.clamp_min(1)


def _check_ages(base_age_N: torch.Tensor, traj_age_NT: torch.Tensor, direction_N: torch.Tensor) -> None:
    _check(base_age_N.ndim == 1 and traj_age_NT.ndim == 2 and direction_N.shape == base_age_N.shape
           and len(traj_age_NT) == len(base_age_N) and traj_age_NT.shape[1] >= 1,
           f"expected base ages N, trajectory ages N×T (T >= 1) and directions N, got {tuple(base_age_N.shape)}, "
           f"{tuple(traj_age_NT.shape)}, {tuple(direction_N.shape)}")
    _check(bool(((direction_N == 0) | (direction_N == 1)).all()), "direction must be 0 (older) or 1 (younger)")


def age_change(base_age_N: torch.Tensor, traj_age_NT: torch.Tensor, direction_N: torch.Tensor) -> torch.Tensor:
    """N float: last-step age − base age, signed so + is the commanded direction (0 older, 1 younger)."""
    _check_ages(base_age_N, traj_age_NT, direction_N)
    sign = 1.0 - 2.0 * direction_N.float()
    return sign * (traj_age_NT[:, -1].float() - base_age_N.float())


def buckets_covered(base_age_N: torch.Tensor, traj_age_NT: torch.Tensor, direction_N: torch.Tensor,
                    bucket_width: float, age_min: float, age_max: Optional[float] = None) -> torch.Tensor:
    """N int64: distinct width-β age buckets strictly beyond the base's bucket, in the commanded
    direction, that the trajectory reaches (eq. 7's hits summed over an episode).

    Buckets start at ``age_min``; ages below it (and above ``age_max`` when given) fall in the edge
    buckets, as in the env, so the counts equal the env's summed ``bucket_hits`` for the same ages.
    """
    _check_ages(base_age_N, traj_age_NT, direction_N)
    _check(bucket_width > 0, f"bucket_width must be > 0, got {bucket_width}")
    # without age_max the top bucket must hold the oldest age seen, so nothing is clamped from above
    top = age_max if age_max is not None else max(float(traj_age_NT.max()), float(base_age_N.max()), age_min) + 1
    n_buckets = max(1, math.ceil((top - age_min) / bucket_width - 1e-9))

    def index(age: torch.Tensor) -> torch.Tensor:  # same formula as rl.envs.face_age.bucket_index
        return torch.floor((age.float() - age_min) / bucket_width).long().clamp(0, n_buckets - 1)

    base_b, traj_b = index(base_age_N), index(traj_age_NT)
    ascending = (direction_N == 0)[:, None]
    beyond = torch.where(ascending, traj_b > base_b[:, None], traj_b < base_b[:, None])
    # count each bucket once however many steps land in it: scatter the hits, then test > 0
    seen = torch.zeros(len(traj_b), n_buckets, dtype=torch.float32, device=traj_b.device)
    seen.scatter_add_(1, traj_b, beyond.float())
    return (seen > 0).sum(1)


@torch.inference_mode()
def flip_noise_floor(generator: Callable[[torch.Tensor], torch.Tensor],
                     gender_fn: Callable[[torch.Tensor], torch.Tensor], base_z_NL: torch.Tensor,
                     step: float, steps: int, seed: int = 0, threshold: float = 0.5) -> float:
    """Gender-flip rate of random walks: the floor a method's flip rate should be read against.

    Each of the N walks starts at its base latent and takes ``steps`` moves of length ``step`` in
    uniformly random directions, each followed by a rescale to the base's norm (stays on the
    N(0, I) shell, where the generator has no truncation artifacts). Same flip definition as
    :func:`gender_flip_rate`; one ``generator`` and one ``gender_fn`` call per step for all N.

    Args:
        generator: z N×L -> images. gender_fn: images -> p_female N.
        base_z_NL: the same base latents the methods start from.
        step: latent distance per move (match the methods' per-step move for a fair floor).
    """
    _check(base_z_NL.ndim == 2 and len(base_z_NL) > 0, f"base_z must be N×L with N >= 1, got {tuple(base_z_NL.shape)}")
    _check(steps >= 1 and step >= 0, f"need steps >= 1 and step >= 0, got steps={steps}, step={step}")
    rng = torch.Generator().manual_seed(seed)
    z = base_z_NL.detach().float().cpu()
    radius = z.norm(dim=1, keepdim=True)
    p_base = torch.as_tensor(gender_fn(generator(z.to(base_z_NL.device)))).float().cpu()
    traj = []
    for _ in range(steps):
        d = torch.randn(z.shape, generator=rng)
        z = z + step * d / d.norm(dim=1, keepdim=True)
        z = z * radius / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        traj.append(torch.as_tensor(gender_fn(generator(z.to(base_z_NL.device)))).float().cpu())
    rate = gender_flip_rate(p_base, torch.stack(traj, 1), threshold)
    log.info("flip noise floor: %.3f over %d walks of %d steps of %.3g", rate, len(z), steps, step)
    return rate
