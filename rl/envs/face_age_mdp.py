"""Experiment A's MDP (Shubham et al.; equation numbers from the paper): its pure functions and constants.

- goal ``g = [s_base, C]``; ``C`` one-hot over (ascending = older, descending = younger);
- action ``[k_gen (L), w1, w2]``; ``k_hyp = ±`` the unit InterfaceGAN age boundary (``+`` when ascending);
- transition (eq. 2) :func:`transition`; typical set (eq. 5) :func:`typical_set`; age buckets (eq. 7)
  :func:`bucket_hits`; identity (eq. 8) :func:`evaluation.face_metrics.identity_distance`; reward (eq. 9)
  :func:`age_reward`; the constants :class:`AgeMDP` (the config's ``env.mdp`` group).

The evaluation reuses these functions; :class:`rl.envs.face_age.FaceAgeCore` runs them batched.
See docs/experiment-a.md for the whole MDP and the reasons behind every default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import torch

from utils.errors import UserError

ASCENDING, DESCENDING = 0, 1  # index of C's hot entry
AUTO = "auto"  # p1/p2: calibrate on the generator's own faces when the env is built


def transition(s_NL: torch.Tensor, k_hyp_NL: torch.Tensor, k_gen_NL: torch.Tensor,
               w1_N: torch.Tensor, w2_N: torch.Tensor, inertia: float) -> torch.Tensor:
    """Eq. 2: ``s' = T·s + (1 - T)·(s + w1·k_hyp + w2·k_gen)``; N×L in, N×L out."""
    step = w1_N[:, None] * k_hyp_NL + w2_N[:, None] * k_gen_NL
    return inertia * s_NL + (1.0 - inertia) * (s_NL + step)


def default_epsilon(latent_dim: int, sigmas: float = 3.0) -> float:
    """A d-aware ε for eq. 5: ``sigmas`` standard deviations of ``½‖z‖²`` under N(0, I_d).

    ``‖z‖²`` is χ²_d (mean d, std √(2d)), so ``½|d − ‖z‖²|`` has scale ``½√(2d)``; a fixed ε
    would be far too strict for large d or far too loose for small d (d=100: ε ≈ 21.2).
    """
    return sigmas * 0.5 * math.sqrt(2.0 * latent_dim)


def typical_set(s_NL: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Eq. 5: bool N, ``½·|d − ‖s‖²| ≤ ε`` with d = L."""
    return 0.5 * (s_NL.shape[1] - s_NL.pow(2).sum(1)).abs() <= epsilon


def num_buckets(age_min: float, age_max: float, bucket_width: float) -> int:
    """B = number of width-β buckets covering ``[age_min, age_max]`` (the last may be partial)."""
    return max(1, math.ceil((age_max - age_min) / bucket_width - 1e-9))


def bucket_index(age_N: torch.Tensor, age_min: float, bucket_width: float, n_buckets: int) -> torch.Tensor:
    """int64 N bucket of each age; ages outside the range fall in the edge buckets."""
    idx = torch.floor((age_N.float() - age_min) / bucket_width).long()
    return idx.clamp(0, n_buckets - 1)


def bucket_hits(age_N: torch.Tensor, age_base_N: torch.Tensor, direction_N: torch.Tensor,
                visited_NB: torch.Tensor, age_min: float, bucket_width: float,
                goal_NB: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: ``M_g = 1`` when the age is beyond the base age in the commanded direction and its
    bucket was not visited yet (and, given ``goal_NB``, is one of the goal's buckets).

    Args:
        age_N, age_base_N: float years. direction_N: int (0 ascending, 1 descending).
        visited_NB: bool, buckets visited so far in each episode.
        goal_NB: bool, the buckets that pay (:func:`direction_buckets` with a goal); None: any.
    Returns:
        ``(hit_N bool, visited_NB updated)``: the age's bucket is marked visited either way.
    """
    bucket = bucket_index(age_N, age_min, bucket_width, visited_NB.shape[1])
    sign = 1.0 - 2.0 * direction_N.float()
    beyond = sign * (age_N.float() - age_base_N.float()) > 0
    fresh = ~visited_NB.gather(1, bucket[:, None])[:, 0]
    if goal_NB is not None:
        fresh = fresh & goal_NB.gather(1, bucket[:, None])[:, 0]
    visited = visited_NB.clone()
    visited[torch.arange(len(bucket), device=bucket.device), bucket] = True
    return beyond & fresh, visited


def direction_buckets(base_bucket_N: torch.Tensor, direction_N: torch.Tensor, n_buckets: int,
                      goal: Optional[int] = None) -> torch.Tensor:
    """bool N×B: the buckets strictly beyond the base bucket in the commanded direction; with ``goal`` K, only
    the K nearest of them (the episode's goal is K buckets of age change, or the edge of the range)."""
    b = torch.arange(n_buckets, device=base_bucket_N.device)[None, :]
    gap = b - base_bucket_N[:, None]
    gap = torch.where(direction_N[:, None] == ASCENDING, gap, -gap)  # buckets beyond the base, > 0 ahead
    return (gap > 0) & (gap <= goal) if goal is not None else gap > 0


def identity_penalty(identity_N: torch.Tensor, p1: float, cost: float, power: float = 1.0) -> torch.Tensor:
    """The graded identity term (not from the paper): ``cost · (I_g / P1)^power``. With ``power`` > 1 it grows
    faster than I_g, so the faces that lose the most identity pay the most."""
    return cost * (identity_N / p1) ** power


def age_reward(identity_N: torch.Tensor, hit_N: torch.Tensor, in_typical_N: torch.Tensor,
               p1: float, p2: float, m: float, r: float, n: float,
               identity_cost: float = 0.0, identity_power: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9 with its episode-ending condition.

    Returns:
        ``(reward_N, failed_N)``: ``-n`` and failed where ``I_g > P2`` or outside the typical
        set; else ``m·r`` for a hit with ``I_g ≤ P1``, ``r`` for a hit with ``P1 < I_g ≤ P2``,
        ``-1`` otherwise; minus ``identity_cost · (I_g / P1)^identity_power`` on every step that does not
        fail (not from the paper: a graded identity term, so a smaller I_g pays below P1 too; 0 is eq. 9).
    """
    failed = (identity_N > p2) | ~in_typical_N
    hit_reward = torch.where(identity_N <= p1, torch.full_like(identity_N, m * r),
                             torch.full_like(identity_N, r))
    reward = torch.where(hit_N, hit_reward, torch.full_like(identity_N, -1.0))
    if identity_cost:
        reward = reward - identity_penalty(identity_N, p1, identity_cost, identity_power)
    return torch.where(failed, torch.full_like(reward, -n), reward).float(), failed


# ---- settings --------------------------------------------------------------------------------
def _finite(name: str, value: float, ok: bool, expected: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and ok):
        raise UserError(f"{name}={value!r} invalid: expected {expected}")


@dataclasses.dataclass(frozen=True)
class AgeMDP:
    """The MDP's constants: the config's ``env.mdp`` group (paper symbols in brackets). The paper's
    values are lost, so every default is ours; docs/experiment-a.md gives the reason for each."""

    bucket_width: float = 5.0
    """β (years): about one boundary unit of age and about the regressor's MAE."""
    epsilon: Optional[float] = None
    """ε of eq. 5; None: 3 std of ½‖z‖² under N(0, I), i.e. 1.5·√(2L) (21.2 for L = 100)."""
    inertia: float = 0.5
    """T of eq. 2, in [0, 1): with action_bound 2 the largest move per step is 1 boundary unit."""
    episode_len: int = 10
    """E_len: ten steps of the largest size can carry a latent past the typical set's edge (ε stops it first)."""
    p1: Union[float, str] = AUTO
    """P1 of eq. 9, or 'auto': the median I_g of a random latent move as long as InterfaceGAN's edit."""
    p2: Union[float, str] = AUTO
    """P2 of eq. 9, or 'auto': the 5 % quantile of I_g between different faces (identity lost beyond)."""
    close_factor: float = 2.0
    """m: keeping I_g ≤ P1 doubles a bucket's reward."""
    hit_reward: float = 10.0
    """r: one new bucket outweighs the -1 step cost of a whole episode."""
    fail_penalty: float = 20.0
    """n: > E_len, so failing never beats running out the clock at -1 a step."""
    age_min: float = 0.0
    """The bucketed age range: room on both sides of the regressor's ages on generated faces (15-61 y)."""
    age_max: float = 80.0
    action_bound: float = 2.0
    """The action box [-b, b]^(L+2) (w1, w2; k_gen is rescaled to unit length when normalize_gen)."""
    normalize_gen: bool = True
    """Use k_gen / ‖k_gen‖, so w2 alone sets its step length."""
    signed_gen: bool = False
    """k_gen flips with C like k_hyp (a reparametrisation: the same reachable moves)."""
    direction_every: int = 0
    """0: C sampled per episode; K: alternate every K episodes per env row (the paper: 100)."""
    identity_cost: float = 0.0
    """Not from the paper: every step that does not fail also pays -identity_cost · I_g / P1, so identity is
    graded below P1 too (eq. 9 pays the same for any I_g ≤ P1); 0 is eq. 9."""
    identity_power: float = 1.0
    """Not from the paper: the graded term pays identity_cost · (I_g / P1)^identity_power; 2 charges the faces that
    lose the most identity more than the mean (the identity tail); 1 is linear."""
    goal_buckets: Optional[int] = None
    """Not from the paper: K, the command asks for K buckets of age change; only the K nearest buckets beyond the
    base pay, and the episode ends once they are all visited. None: every bucket to the end of the range (the
    paper), so a younger command on an adult's face pays for walking it down to a toddler's."""
    identity_stop: Optional[float] = None
    """Not from the paper: x, a step whose I_g would exceed x·P1 is refused; the latent stays where it was and the
    episode ends there (terminated, reward 0, no failure), so the edit's result is the last face within the bound.
    None: no stop (eq. 9 alone; I_g > P2 still fails)."""

    def __post_init__(self):
        _finite("bucket_width", self.bucket_width, self.bucket_width > 0, "β > 0 years")
        if self.epsilon is not None:
            _finite("epsilon", self.epsilon, self.epsilon > 0, "ε > 0 (or None for the d-aware default)")
        _finite("inertia", self.inertia, 0.0 <= self.inertia < 1.0, "T in [0, 1)")
        if int(self.episode_len) != self.episode_len or self.episode_len < 1:
            raise UserError(f"episode_len={self.episode_len!r} invalid: expected an int >= 1")
        for name in ("p1", "p2"):
            value = getattr(self, name)
            if value != AUTO:
                _finite(name, value, isinstance(value, (int, float)) and value >= 0,
                        f"a finite identity distance >= 0 or '{AUTO}' (calibrate)")
        if self.calibrated and not self.p1 < self.p2:
            raise UserError(f"p1={self.p1} and p2={self.p2} invalid: expected P1 < P2")
        if self.identity_stop is not None:
            _finite("identity_stop", self.identity_stop, self.identity_stop > 0, "a multiple of P1 > 0 or None (no stop)")
        if self.calibrated and self.identity_stop is not None and not self.identity_stop * self.p1 < self.p2:
            raise UserError(f"identity_stop={self.identity_stop} invalid: expected below P2/P1 = {self.p2 / self.p1:.3g} "
                            "(a stop at or beyond P2 never acts: the step fails first)")
        for name in ("close_factor", "hit_reward", "fail_penalty", "identity_cost"):
            _finite(name, getattr(self, name), getattr(self, name) >= 0, "a finite number >= 0")
        _finite("identity_power", self.identity_power, self.identity_power >= 1, "a finite power >= 1")
        _finite("age_min", self.age_min, True, "a finite age in years")
        _finite("age_max", self.age_max, self.age_max > self.age_min, f"> age_min={self.age_min}")
        _finite("action_bound", self.action_bound, self.action_bound > 0, "a finite bound > 0")
        if self.goal_buckets is not None and (isinstance(self.goal_buckets, bool) or not isinstance(
                self.goal_buckets, int) or self.goal_buckets < 1):
            raise UserError(f"goal_buckets={self.goal_buckets!r} invalid: expected an int >= 1 or None (every bucket)")
        if int(self.direction_every) != self.direction_every or self.direction_every < 0:
            raise UserError(f"direction_every={self.direction_every!r} invalid: expected an int >= 0")

    @property
    def calibrated(self) -> bool:
        """True when P1 and P2 are numbers (not 'auto')."""
        return AUTO not in (self.p1, self.p2)

    @property
    def stop_distance(self) -> float:
        """The I_g beyond which a step is refused (``identity_stop``·P1); inf without a stop."""
        return math.inf if self.identity_stop is None else self.identity_stop * self.p1

    def traversal_w1(self, extent: float) -> float:
        """w1 per step that moves ``extent`` boundary units along k_hyp in ``episode_len`` steps
        (eq. 2 keeps ``1 − T`` of each step); an extent outside ``[0, action_bound]`` per step raises."""
        w1 = extent / (self.episode_len * (1.0 - self.inertia))
        if not 0.0 <= w1 <= self.action_bound:
            raise UserError(f"extent {extent:g} needs w1={w1:.2f} per step, outside [0, action bound "
                            f"{self.action_bound:g}]")
        return w1
