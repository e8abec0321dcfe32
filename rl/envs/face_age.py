"""Experiment A environment core: age a face up or down in a GAN's latent space, keeping identity.

The MDP of Shubham et al. (SPEC §2; equation numbers from the paper), N episodes batched:

- goal ``g = [s_base, C]``; ``C`` one-hot over (ascending = older, descending = younger);
  **observation** ``[s_t (L), s_base (L), C (2)]``, width ``2L + 2``;
- **action** ``[k_gen (L), w1, w2]`` in the box ``[-b, b]^(L+2)``; ``k_hyp = ±`` the unit
  InterfaceGAN age boundary (``+`` when ascending); ``k_gen`` is rescaled to unit length when
  ``normalize_gen`` (so ``w1`` and ``w2`` are both step lengths in latent units); with
  ``signed_gen`` k_gen is also multiplied by ±1 by C, so one k_gen means "older" or "younger"
  as commanded (the policy sees C, so the reachable moves are the same);
- **transition** (eq. 2) :func:`transition`; **typical set** (eq. 5) :func:`typical_set`;
- **age buckets** (eq. 7) :func:`bucket_hits`; **identity** (eq. 8) :func:`identity_distance`;
- **reward** (eq. 9) :func:`age_reward`. An episode ends (terminated) when the identity is lost
  (``I_g > P2``), the latent leaves the typical set, or every bucket beyond the base age in the
  commanded direction has been visited; it is truncated after ``episode_len`` steps.

The base face's own bucket counts as visited at reset (it was visited at t = 0), so a hit
always means reaching a new bucket beyond the base one; a base with no bucket left in its
direction ends after one step. Ages outside ``[age_min, age_max]`` fall in the edge buckets.
The pure functions are what the evaluation reuses; ``FaceAgeCore.start`` runs chosen bases.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rl.envs.views import check_action, mask_rows, row_randint, seeds_for

log = logging.getLogger(__name__)

_STREAM_BASE, _STREAM_DIRECTION = 0, 1
ASCENDING, DESCENDING = 0, 1  # index of C's hot entry


# ---- pure functions of the MDP (the evaluation reuses them) --------------------------------
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
                visited_NB: torch.Tensor, age_min: float, bucket_width: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: ``M_g = 1`` when the age is beyond the base age in the commanded direction and its
    bucket was not visited yet.

    Args:
        age_N, age_base_N: float years. direction_N: int (0 ascending, 1 descending).
        visited_NB: bool, buckets visited so far in each episode.
    Returns:
        ``(hit_N bool, visited_NB updated)``: the age's bucket is marked visited either way.
    """
    bucket = bucket_index(age_N, age_min, bucket_width, visited_NB.shape[1])
    sign = 1.0 - 2.0 * direction_N.float()
    beyond = sign * (age_N.float() - age_base_N.float()) > 0
    fresh = ~visited_NB.gather(1, bucket[:, None])[:, 0]
    visited = visited_NB.clone()
    visited[torch.arange(len(bucket), device=bucket.device), bucket] = True
    return beyond & fresh, visited


def direction_buckets(base_bucket_N: torch.Tensor, direction_N: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """bool N×B: the buckets strictly beyond the base bucket in the commanded direction."""
    b = torch.arange(n_buckets, device=base_bucket_N.device)[None, :]
    up = b > base_bucket_N[:, None]
    down = b < base_bucket_N[:, None]
    return torch.where(direction_N[:, None] == ASCENDING, up, down)


def identity_distance(feat_NF: torch.Tensor, base_feat_NF: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``I_g = ‖F(G(s_t)) − F(G(s_base))‖²`` per row, N float."""
    return (feat_NF.float() - base_feat_NF.float()).pow(2).flatten(1).sum(1)


def age_reward(identity_N: torch.Tensor, hit_N: torch.Tensor, in_typical_N: torch.Tensor,
               p1: float, p2: float, m: float, r: float, n: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9 with its episode-ending condition.

    Returns:
        ``(reward_N, failed_N)``: ``-n`` and failed where ``I_g > P2`` or outside the typical
        set; else ``m·r`` for a hit with ``I_g ≤ P1``, ``r`` for a hit with ``P1 < I_g ≤ P2``,
        ``-1`` otherwise.
    """
    failed = (identity_N > p2) | ~in_typical_N
    hit_reward = torch.where(identity_N <= p1, torch.full_like(identity_N, m * r),
                             torch.full_like(identity_N, r))
    reward = torch.where(hit_N, hit_reward, torch.full_like(identity_N, -1.0))
    return torch.where(failed, torch.full_like(reward, -n), reward).float(), failed


# ---- settings --------------------------------------------------------------------------------
def _finite(name: str, value: float, ok: bool, expected: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        raise ValueError(f"{name}={value!r} invalid: expected {expected}")


@dataclasses.dataclass(frozen=True)
class AgeMDP:
    """The MDP's constants (paper symbols in brackets); the paper's values are lost, so every
    default is ours (see configs/age_ppo.yaml for the reasons)."""

    bucket_width: float = 5.0      # β, years
    epsilon: Optional[float] = None  # ε of eq. 5; None: default_epsilon(L)
    inertia: float = 0.5           # T of eq. 2
    episode_len: int = 10          # E_len
    p1: Optional[float] = None     # P1: calibrate on the generator's faces
    p2: Optional[float] = None     # P2
    close_factor: float = 2.0      # m
    hit_reward: float = 10.0       # r
    fail_penalty: float = 20.0     # n
    age_min: float = 0.0
    age_max: float = 80.0
    action_bound: float = 2.0      # the box [-b, b]^(L+2)
    normalize_gen: bool = True     # use k_gen / ‖k_gen‖
    signed_gen: bool = False       # k_gen flips with C like k_hyp (a reparametrisation: same reachable moves)
    direction_every: int = 0       # 0: C sampled per episode; K: alternate every K episodes

    def __post_init__(self):
        _finite("bucket_width", self.bucket_width, self.bucket_width > 0, "β > 0 years")
        if self.epsilon is not None:
            _finite("epsilon", self.epsilon, self.epsilon > 0, "ε > 0 (or None for the d-aware default)")
        _finite("inertia", self.inertia, 0.0 <= self.inertia < 1.0, "T in [0, 1)")
        if int(self.episode_len) != self.episode_len or self.episode_len < 1:
            raise ValueError(f"episode_len={self.episode_len!r} invalid: expected an int >= 1")
        for name in ("p1", "p2"):
            value = getattr(self, name)
            if value is not None:
                _finite(name, value, value >= 0, "a finite identity distance >= 0")
        if self.p1 is not None and self.p2 is not None and not self.p1 < self.p2:
            raise ValueError(f"p1={self.p1} and p2={self.p2} invalid: expected P1 < P2")
        for name in ("close_factor", "hit_reward", "fail_penalty"):
            _finite(name, getattr(self, name), getattr(self, name) >= 0, "a finite number >= 0")
        _finite("age_min", self.age_min, True, "a finite age in years")
        _finite("age_max", self.age_max, self.age_max > self.age_min, f"> age_min={self.age_min}")
        _finite("action_bound", self.action_bound, self.action_bound > 0, "a finite bound > 0")
        if int(self.direction_every) != self.direction_every or self.direction_every < 0:
            raise ValueError(f"direction_every={self.direction_every!r} invalid: expected an int >= 0")

    def traversal_w1(self, extent: float) -> float:
        """w1 per step that moves ``extent`` boundary units along k_hyp in ``episode_len`` steps
        (eq. 2 keeps ``1 − T`` of each step); an extent outside ``[0, action_bound]`` per step raises."""
        w1 = extent / (self.episode_len * (1.0 - self.inertia))
        if not 0.0 <= w1 <= self.action_bound:
            raise ValueError(f"extent {extent:g} needs w1={w1:.2f} per step, outside [0, action bound "
                             f"{self.action_bound:g}]")
        return w1


# ---- the batched core ------------------------------------------------------------------------
class FaceAgeCore:
    """N episodes of latent age editing on one device (core protocol of ``rl.envs.views``).

    Args:
        pool_PL: base latents episodes draw from (training or evaluation pool); each must lie
            in the typical set.
        generator: frozen ``z_NL -> images N×3×H×W`` (e.g. a ``GeneratorAdapter``).
        age_model: frozen ``images -> ages N`` (years; ``A_reg``).
        features: frozen ``images -> N×F`` (``F`` of eq. 8).
        boundary_L: InterfaceGAN age boundary pointing older (normalised here).
        num_envs: N. seed: int (row i gets ``seed + i``) or one seed per row.
        **mdp: fields of :class:`AgeMDP` (``p1`` and ``p2`` are required).
    Attributes: ``latent_dim`` L, ``obs_dim`` 2L+2, ``act_dim`` L+2, ``action_bound``, ``device``,
    ``epsilon`` (resolved), ``mdp``, ``nets``; per-row state ``s_NL``, ``base_NL``, ``age_base_N``,
    ``direction_N``, ``visited_NB``, ``t_N``.
    Every step runs the generator, the age model and ``features`` once for the stepped rows,
    under ``torch.inference_mode``; reset runs them once for the reset rows (base faces).
    """

    def __init__(self, pool_PL: torch.Tensor, generator: nn.Module, age_model: nn.Module,
                 features: nn.Module, boundary_L: torch.Tensor, num_envs: int = 1,
                 seed: int | Sequence[int] = 0, **mdp):
        self.mdp = AgeMDP(**mdp)
        if self.mdp.p1 is None or self.mdp.p2 is None:
            raise ValueError("p1 and p2 are required: calibrate them on the generator's faces "
                             "(rl.builders.calibrate_identity_thresholds)")
        if pool_PL.dim() != 2 or not pool_PL.dtype.is_floating_point or len(pool_PL) == 0:
            raise ValueError(f"pool_PL must be a non-empty P×L float tensor, got "
                             f"{pool_PL.dtype} {tuple(pool_PL.shape)}")
        self.pool_PL, self.device = pool_PL.float(), pool_PL.device
        self.latent_dim = L = pool_PL.shape[1]
        self.obs_dim, self.act_dim, self.action_bound = 2 * L + 2, L + 2, self.mdp.action_bound
        boundary = torch.as_tensor(boundary_L, dtype=torch.float32, device=self.device).reshape(-1)
        if boundary.shape != (self.latent_dim,) or not torch.isfinite(boundary).all() or boundary.norm() == 0:
            raise ValueError(f"boundary_L must be a finite non-zero vector of length {self.latent_dim}, "
                             f"got shape {tuple(boundary_L.shape)}")
        self.boundary_L = boundary / boundary.norm()
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs={num_envs} invalid: expected an int >= 1")
        self.epsilon = self.mdp.epsilon or default_epsilon(self.latent_dim)
        outside = int((~typical_set(self.pool_PL, self.epsilon)).sum())
        if outside:
            raise ValueError(f"{outside} of {len(self.pool_PL)} pool latents lie outside the typical "
                             f"set (epsilon={self.epsilon:.3g}): draw the pool from N(0, I) and filter it")
        self.nets = {"generator": generator, "age_model": age_model, "features": features}
        for net in self.nets.values():
            net.eval()
        self.num_envs, self.n_buckets = int(num_envs), num_buckets(
            self.mdp.age_min, self.mdp.age_max, self.mdp.bucket_width)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-self.action_bound, self.action_bound, (self.act_dim,), np.float32)
        feat_dim = self._probe()
        n, dev = self.num_envs, self.device
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=dev)  # noqa: E731
        self.s_NL, self.base_NL, self.base_feat_NF = zeros(n, L), zeros(n, L), zeros(n, feat_dim)
        self.age_base_N = zeros(n)
        self.base_idx_N, self.direction_N, self.t_N = (zeros(n, dtype=torch.int64) for _ in range(3))
        self.visited_NB = zeros(n, self.n_buckets, dtype=torch.bool)
        self.todo_NB = zeros(n, self.n_buckets, dtype=torch.bool)  # buckets left to reach
        self._seeds, self._counters = zeros(n, dtype=torch.int64), zeros(n, dtype=torch.int64)
        self._needs_reset = torch.ones(n, dtype=torch.bool, device=dev)
        self.reseed(seeds_for(seed, n), None)

    def _probe(self) -> int:
        # one forward at construction turns shape mismatches into clear errors here
        age, feat = self._measure(self.pool_PL[:1])
        if age.shape != (1,):
            raise ValueError(f"age_model must return one age per image, got {tuple(age.shape)} for one")
        return feat.shape[1]

    def _measure(self, s_RL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            images = self.nets["generator"](s_RL)
            age, feat = self.nets["age_model"](images), self.nets["features"](images)
        if feat.shape[0] != len(s_RL):
            raise ValueError(f"features must return N×F, got {tuple(feat.shape)} for {len(s_RL)} images")
        # clones leave inference mode so callers get ordinary tensors
        return age.float().reshape(len(s_RL), -1).squeeze(1).clone(), feat.float().flatten(1).clone()

    def spawn(self, num_envs: int, seed: int | Sequence[int], pool_PL: torch.Tensor | None = None,
              boundary_L: torch.Tensor | None = None) -> FaceAgeCore:
        """A new core with the same networks and MDP (and pool and boundary, unless given)."""
        return FaceAgeCore(self.pool_PL if pool_PL is None else pool_PL,
                           boundary_L=self.boundary_L if boundary_L is None else boundary_L,
                           num_envs=num_envs, seed=seed, **self.nets, **dataclasses.asdict(self.mdp))

    # ---- core protocol ---------------------------------------------------------------------
    def observe(self, s_NL: torch.Tensor, base_NL: torch.Tensor, direction_N: torch.Tensor) -> torch.Tensor:
        """Observations ``[s_t, s_base, C]``, N×(2L+2) float32 (C one-hot: ascending, descending)."""
        c = torch.nn.functional.one_hot(direction_N.long(), 2).float()
        return torch.cat([s_NL.float(), base_NL.float(), c], dim=1)

    def reseed(self, seeds: Sequence[int], mask_N: torch.Tensor | None = None) -> None:
        """Restart the random streams of the masked rows (all when None), one seed per row."""
        rows = self._rows(mask_N)
        seeds_t = torch.as_tensor([int(s) for s in seeds], dtype=torch.int64, device=self.device)
        if seeds_t.shape != rows.shape or (seeds_t < 0).any():
            raise ValueError(f"need {len(rows)} non-negative seeds (one per reseeded row), got {seeds_t.tolist()}")
        self._seeds[rows], self._counters[rows], self._needs_reset[rows] = seeds_t, 0, True

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        """New episodes in the masked rows (all when None): a base latent from the pool and a
        direction from each row's stream; returns N×(2L+2) observations of all rows."""
        rows = self._rows(mask_N)
        seeds, counters = self._seeds[rows], self._counters[rows]
        idx = row_randint(seeds, counters, _STREAM_BASE, len(self.pool_PL))
        every = self.mdp.direction_every
        # alternation starts at the row seed's parity, so half the rows begin each way
        direction = ((counters // every + seeds) % 2 if every
                     else row_randint(seeds, counters, _STREAM_DIRECTION, 2))
        self._counters[rows] += 1
        return self.start(rows, idx, direction)

    def start(self, ids_R: torch.Tensor, base_idx_R: torch.Tensor, direction_R: torch.Tensor) -> torch.Tensor:
        """Start episodes in rows ``ids`` from chosen pool entries and directions (0 ascending,
        1 descending), e.g. to run every evaluation base both ways; the rows' random streams
        are untouched. Returns N×(2L+2) observations of all rows."""
        ids, idx, direction = (torch.as_tensor(x, device=self.device).long()
                               for x in (ids_R, base_idx_R, direction_R))
        if not (ids.shape == idx.shape == direction.shape) or ids.dim() != 1:
            raise ValueError(f"ids, base_idx and direction must be equal-length vectors, got "
                             f"{tuple(ids.shape)}, {tuple(idx.shape)}, {tuple(direction.shape)}")
        if len(ids):
            base = self.pool_PL[idx]
            age_base, feat_base = self._measure(base)
            base_bucket = bucket_index(age_base, self.mdp.age_min, self.mdp.bucket_width, self.n_buckets)
            self.base_idx_N[ids], self.direction_N[ids] = idx, direction
            self.s_NL[ids], self.base_NL[ids] = base, base
            self.age_base_N[ids], self.base_feat_NF[ids] = age_base, feat_base
            self.visited_NB[ids] = torch.nn.functional.one_hot(base_bucket, self.n_buckets).bool()
            self.todo_NB[ids] = direction_buckets(base_bucket, direction, self.n_buckets)
            self.t_N[ids], self._needs_reset[ids] = 0, False
        return self.observe(self.s_NL, self.base_NL, self.direction_N)

    def step(self, action_RA: torch.Tensor, ids_R: torch.Tensor | None = None):
        """Apply actions ``[k_gen, w1, w2]`` (R×(L+2)) to rows ``ids`` (all when None).

        Returns:
            ``(obs_RO, reward_R, terminated_R, truncated_R, info)``; info holds R-tensors
            ``age``, ``age_base``, ``identity`` (I_g), ``hit`` (M_g), ``in_typical_set``,
            ``direction`` (0 ascending, 1 descending) and ``t`` (steps taken).
        """
        ids = torch.arange(self.num_envs, device=self.device) if ids_R is None else ids_R.long()
        action = self._check_action(action_RA, len(ids))
        if self._needs_reset[ids].any():
            raise RuntimeError(f"rows {ids[self._needs_reset[ids]].tolist()} stepped before reset: "
                               "their episodes ended, call reset(mask) first")
        mdp, L = self.mdp, self.latent_dim
        k_gen, w1, w2 = action[:, :L], action[:, L], action[:, L + 1]
        if mdp.normalize_gen:
            k_gen = k_gen / k_gen.norm(dim=1, keepdim=True).clamp_min(1e-6)
        direction = self.direction_N[ids]
        sign = (1.0 - 2.0 * direction.float())[:, None]
        k_hyp = sign * self.boundary_L[None, :]
        if mdp.signed_gen:
            k_gen = sign * k_gen
        s_next = transition(self.s_NL[ids], k_hyp, k_gen, w1, w2, mdp.inertia)
        age, feat = self._measure(s_next)
        identity = identity_distance(feat, self.base_feat_NF[ids])
        in_typical = typical_set(s_next, self.epsilon)
        hit, visited = bucket_hits(age, self.age_base_N[ids], direction, self.visited_NB[ids],
                                   mdp.age_min, mdp.bucket_width)
        reward, failed = age_reward(identity, hit, in_typical, mdp.p1, mdp.p2, mdp.close_factor,
                                    mdp.hit_reward, mdp.fail_penalty)
        all_done = (visited | ~self.todo_NB[ids]).all(1)
        self.s_NL[ids], self.visited_NB[ids] = s_next, visited
        self.t_N[ids] += 1
        terminated = failed | all_done
        truncated = (self.t_N[ids] >= mdp.episode_len) & ~terminated
        self._needs_reset[ids] = terminated | truncated
        obs = self.observe(s_next, self.base_NL[ids], direction)
        info = {"age": age, "age_base": self.age_base_N[ids], "identity": identity, "hit": hit,
                "in_typical_set": in_typical, "direction": direction, "t": self.t_N[ids]}
        return obs, reward, terminated, truncated, info

    # ---- private ---------------------------------------------------------------------------
    def _rows(self, mask_N: torch.Tensor | None) -> torch.Tensor:
        return mask_rows(mask_N, self.num_envs, self.device)

    def _check_action(self, action: torch.Tensor, n: int) -> torch.Tensor:
        return check_action(action, n, self.act_dim, self.action_bound, self.device,
                            f"[k_gen (L={self.latent_dim}), w1, w2]")
