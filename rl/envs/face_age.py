"""Experiment A environment core: age a face up or down in a GAN's latent space, keeping identity.

The MDP of Shubham et al. (equation numbers from the paper; the pure functions and constants are in
:mod:`rl.envs.face_age_mdp`, the whole MDP in docs/experiment-a.md), N episodes batched:
**observation** ``[s_t (L), s_base (L), C (2)]``, width ``2L + 2``; **action** ``[k_gen (L), w1, w2]``
in ``[-b, b]^(L+2)``; eq. 2 moves the latent, eq. 5 keeps it typical, eq. 7-9 pay for new age
buckets while the identity distance stays small. An episode ends (terminated) when the identity is
lost (``I_g > P2``), the latent leaves the typical set, or every bucket beyond the base age in the
commanded direction has been visited (the nearest ``goal_buckets`` of them when that is set: only those
pay), or a step is refused by ``identity_stop`` (its face would lose more than that many P1 of identity: the
latent stays, the reward is 0); it is truncated after ``episode_len`` steps.

The base face's own bucket counts as visited at reset, so a hit always means reaching a new bucket
beyond the base one; a base with no bucket left in its direction ends after one step. Ages outside
``[age_min, age_max]`` fall in the edge buckets. ``FaceAgeCore.start`` runs chosen bases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from evaluation.face_metrics import identity_distance
from lightning_modules.inference import module_on
from rl.envs.core import RowStreams, check_action, mask_rows, row_randint
from rl.envs.face_age_mdp import (
    ASCENDING,
    DESCENDING,
    AgeMDP,
    age_reward,
    bucket_hits,
    bucket_index,
    default_epsilon,
    direction_buckets,
    num_buckets,
    transition,
    typical_set,
)
from utils.errors import UserError

__all__ = ["ASCENDING", "DESCENDING", "AgeMDP", "FaceAgeCore", "age_reward", "bucket_hits", "bucket_index",
           "default_epsilon", "direction_buckets", "identity_distance", "num_buckets", "transition", "typical_set"]
log = logging.getLogger(__name__)
_STREAM_BASE, _STREAM_DIRECTION = 0, 1


class FaceAgeCore(RowStreams):
    """N episodes of latent age editing on one device (a :class:`rl.envs.views.BatchedCore`).

    Args:
        pool_PL: base latents episodes draw from (training or evaluation pool); each must lie
            in the typical set.
        generator: frozen ``z_NL -> images N×3×H×W`` (e.g. a ``GeneratorAdapter``).
        age_model: frozen ``images -> ages N`` (years; ``A_reg``).
        features: frozen ``images -> N×F`` (``F`` of eq. 8).
        boundary_L: InterfaceGAN age boundary pointing older (normalised here).
        mdp: the constants, P1 and P2 as numbers (calibrated already).
        num_envs: N. seed: int (row i gets ``seed + i``) or one seed per row.
        age_and_features: optional frozen ``images -> (ages N, N×F)``, the same values as ``age_model`` and
            ``features`` from one pass (they share a trunk); used for every measurement when given.
        kept_KL: optional K latent directions the transition keeps fixed (not from the paper; InterfaceGAN's
            conditional editing applied to every step): each move s' − s loses its part in their span, so e.g.
            the gender boundary's score of the latent never changes.
    Attributes: ``latent_dim`` L, ``obs_dim`` 2L+2, ``act_dim`` L+2, ``action_bound``, ``device``,
    ``epsilon`` (resolved), ``mdp``, ``nets``; per-row state ``s_NL``, ``base_NL``, ``age_base_N``,
    ``direction_N``, ``visited_NB``, ``t_N``.
    Every step runs the generator, the age model and ``features`` once for the stepped rows,
    under ``torch.inference_mode``; reset runs them once for the reset rows (base faces).
    """

    def __init__(self, pool_PL: torch.Tensor, generator: nn.Module, age_model: nn.Module,
                 features: nn.Module, boundary_L: torch.Tensor, mdp: AgeMDP, num_envs: int = 1,
                 seed: int | Sequence[int] = 0, age_and_features: nn.Module | None = None,
                 kept_KL: torch.Tensor | None = None):
        if not isinstance(mdp, AgeMDP) or not mdp.calibrated:
            raise UserError(f"the face core needs an AgeMDP with numbers for p1 and p2 (calibrate 'auto' first), "
                            f"got {mdp!r}")
        self.mdp = mdp
        if pool_PL.dim() != 2 or not pool_PL.dtype.is_floating_point or len(pool_PL) == 0:
            raise UserError(f"pool_PL must be a non-empty P×L float tensor, got {pool_PL.dtype} {tuple(pool_PL.shape)}")
        self.pool_PL, self.device = pool_PL.float(), pool_PL.device
        self.latent_dim = L = pool_PL.shape[1]
        self.obs_dim, self.act_dim, self.action_bound = 2 * L + 2, L + 2, mdp.action_bound
        self.boundary_L = self._unit_boundary(boundary_L)
        self.kept_KL, self._kept_basis_LK = self._kept_basis(kept_KL)
        if int(num_envs) != num_envs or num_envs < 1:
            raise UserError(f"num_envs={num_envs} invalid: expected an int >= 1")
        self.epsilon = mdp.epsilon or default_epsilon(L)
        outside = int((~typical_set(self.pool_PL, self.epsilon)).sum())
        if outside:
            raise UserError(f"{outside} of {len(self.pool_PL)} pool latents lie outside the typical "
                            f"set (epsilon={self.epsilon:.3g}): draw the pool from N(0, I) and filter it")
        self.nets = {"generator": generator, "age_model": age_model, "features": features}
        if age_and_features is not None:  # images -> (ages, features) in one pass: what each step measures
            self.nets["age_and_features"] = age_and_features
        for net in self.nets.values():
            net.eval()
        self.num_envs, self.n_buckets = int(num_envs), num_buckets(mdp.age_min, mdp.age_max, mdp.bucket_width)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-self.action_bound, self.action_bound, (self.act_dim,), np.float32)
        self._init_state(self._probe())
        self._init_streams(seed)

    def _unit_boundary(self, boundary_L: torch.Tensor) -> torch.Tensor:
        boundary = torch.as_tensor(boundary_L, dtype=torch.float32, device=self.device).reshape(-1)
        if boundary.shape != (self.latent_dim,) or not torch.isfinite(boundary).all() or boundary.norm() == 0:
            raise UserError(f"boundary_L must be a finite non-zero vector of length {self.latent_dim}, "
                            f"got shape {tuple(boundary_L.shape)}")
        return boundary / boundary.norm()

    def _kept_basis(self, kept_KL: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(the kept directions K×L, an orthonormal basis of their span L×K); (None, None) without any."""
        if kept_KL is None:
            return None, None
        kept = torch.as_tensor(kept_KL, dtype=torch.float32, device=self.device)
        kept = kept.reshape(1, -1) if kept.dim() == 1 else kept
        valid = kept.dim() == 2 and kept.shape[1] == self.latent_dim and bool(torch.isfinite(kept).all())
        basis, r = torch.linalg.qr(kept.T) if valid else (None, None)
        if not valid or (r.diagonal().abs() < 1e-6).any():
            raise UserError(f"kept_KL must be linearly independent finite directions of length {self.latent_dim}, "
                            f"got shape {tuple(kept.shape)}")
        return kept, basis

    def _init_state(self, feat_dim: int) -> None:
        n, L, dev = self.num_envs, self.latent_dim, self.device
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=dev)  # noqa: E731
        self.s_NL, self.base_NL, self.base_feat_NF = zeros(n, L), zeros(n, L), zeros(n, feat_dim)
        self.age_base_N = zeros(n)
        self.age_N, self.identity_N = zeros(n), zeros(n)  # the current face's age and I_g (kept by a refused step)
        self.base_idx_N, self.direction_N, self.t_N = (zeros(n, dtype=torch.int64) for _ in range(3))
        self.visited_NB = zeros(n, self.n_buckets, dtype=torch.bool)
        self.todo_NB = zeros(n, self.n_buckets, dtype=torch.bool)  # buckets left to reach

    def _probe(self) -> int:
        # one forward at construction turns shape mismatches into clear errors here
        age, feat = self.measure(self.pool_PL[:1])
        if age.shape != (1,):
            raise UserError(f"age_model must return one age per image, got {tuple(age.shape)} for one")
        return feat.shape[1]

    def measure(self, s_RL: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_reg's age R, F's features R×F) of the faces G makes of ``s_RL``; ``grad``: differentiable in
        ``s_RL`` (training by gradient through the frozen nets), else computed in inference mode."""
        with torch.inference_mode(not grad):
            return self.measure_images(self.nets["generator"](s_RL), grad)

    def measure_images(self, images: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`measure` of faces already made (a caller that also scores the images otherwise)."""
        with torch.inference_mode(not grad):
            if "age_and_features" in self.nets:
                age, feat = self.nets["age_and_features"](images)
            else:
                age, feat = self.nets["age_model"](images), self.nets["features"](images)
        if feat.shape[0] != len(images):
            raise UserError(f"features must return N×F, got {tuple(feat.shape)} for {len(images)} images")
        # clones leave inference mode so callers get ordinary tensors; a model that answers on the host
        # (the packaged ONNX age net) is brought to the core's device
        return (age.float().reshape(len(images), -1).squeeze(1).to(self.device).clone(),
                feat.float().flatten(1).to(self.device).clone())

    def spawn(self, num_envs: int, seed: int | Sequence[int], pool_PL: torch.Tensor | None = None,
              boundary_L: torch.Tensor | None = None) -> FaceAgeCore:
        """A new core with the same networks and MDP (and pool and boundary, unless given)."""
        return FaceAgeCore(self.pool_PL if pool_PL is None else pool_PL, mdp=self.mdp,
                           boundary_L=self.boundary_L if boundary_L is None else boundary_L,
                           num_envs=num_envs, seed=seed, kept_KL=self.kept_KL, **self.nets)

    def to(self, device: torch.device | str) -> FaceAgeCore:
        """This core with its pool, boundary and networks on ``device`` (itself when they are there already;
        the networks move in place); the rows' streams restart from their seeds."""
        device = torch.device(device)
        if device == self.device:
            return self
        nets = {k: module_on(net, device) for k, net in self.nets.items()}
        kept = None if self.kept_KL is None else self.kept_KL.to(device)
        return FaceAgeCore(self.pool_PL.to(device), mdp=self.mdp, boundary_L=self.boundary_L.to(device),
                           num_envs=self.num_envs, seed=self._seeds.tolist(), kept_KL=kept, **nets)

    # ---- core protocol ---------------------------------------------------------------------
    def observe(self, s_NL: torch.Tensor, base_NL: torch.Tensor, direction_N: torch.Tensor) -> torch.Tensor:
        """Observations ``[s_t, s_base, C]``, N×(2L+2) float32 (C one-hot: ascending, descending)."""
        c = torch.nn.functional.one_hot(direction_N.long(), 2).float()
        return torch.cat([s_NL.float(), base_NL.float(), c], dim=1)

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        """New episodes in the masked rows (all when None): a base latent from the pool and a
        direction from each row's stream; returns N×(2L+2) observations of all rows."""
        rows = mask_rows(mask_N, self.num_envs, self.device)
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
            raise UserError(f"ids, base_idx and direction must be equal-length vectors, got "
                            f"{tuple(ids.shape)}, {tuple(idx.shape)}, {tuple(direction.shape)}")
        if len(ids):
            base = self.pool_PL[idx]
            age_base, feat_base = self.measure(base)
            base_bucket = bucket_index(age_base, self.mdp.age_min, self.mdp.bucket_width, self.n_buckets)
            self.base_idx_N[ids], self.direction_N[ids] = idx, direction
            self.s_NL[ids], self.base_NL[ids] = base, base
            self.age_base_N[ids], self.base_feat_NF[ids] = age_base, feat_base
            self.age_N[ids], self.identity_N[ids] = age_base, 0.0
            self.visited_NB[ids] = torch.nn.functional.one_hot(base_bucket, self.n_buckets).bool()
            self.todo_NB[ids] = direction_buckets(base_bucket, direction, self.n_buckets, self.mdp.goal_buckets)
            self.t_N[ids], self._needs_reset[ids] = 0, False
        return self.observe(self.s_NL, self.base_NL, self.direction_N)

    def step(self, action_RA: torch.Tensor, ids_R: torch.Tensor | None = None):
        """Apply actions ``[k_gen, w1, w2]`` (R×(L+2)) to rows ``ids`` (all when None).

        Returns:
            ``(obs_RO, reward_R, terminated_R, truncated_R, info)``; info holds R-tensors
            ``age``, ``age_base``, ``identity`` (I_g), ``hit`` (M_g), ``in_typical_set``,
            ``direction`` (0 ascending, 1 descending), ``t`` (steps taken) and ``stopped`` (the step was refused by
            ``mdp.identity_stop``: the latent, age and I_g are the previous face's, the reward 0, the episode over).
        """
        ids = torch.arange(self.num_envs, device=self.device) if ids_R is None else ids_R.long()
        action = self._check_action(action_RA, len(ids))
        if self._needs_reset[ids].any():
            raise RuntimeError(f"rows {ids[self._needs_reset[ids]].tolist()} stepped before reset: "
                               "their episodes ended, call reset(mask) first")
        mdp = self.mdp
        direction = self.direction_N[ids]
        s_next = self.move(self.s_NL[ids], action, direction)
        age, feat = self.measure(s_next)
        identity = identity_distance(feat, self.base_feat_NF[ids])
        stopped = identity > mdp.stop_distance
        if stopped.any():  # refused: the latent stays on the current face, whose age and I_g the step reports
            s_next = torch.where(stopped[:, None], self.s_NL[ids], s_next)
            age = torch.where(stopped, self.age_N[ids], age)
            identity = torch.where(stopped, self.identity_N[ids], identity)
        in_typical = typical_set(s_next, self.epsilon)
        todo = self.todo_NB[ids]
        hit, visited = bucket_hits(age, self.age_base_N[ids], direction, self.visited_NB[ids],
                                   mdp.age_min, mdp.bucket_width, todo)
        reward, failed = age_reward(identity, hit, in_typical, mdp.p1, mdp.p2, mdp.close_factor,
                                    mdp.hit_reward, mdp.fail_penalty, mdp.identity_cost, mdp.identity_power)
        reward = torch.where(stopped, torch.zeros_like(reward), reward)  # its bucket was visited: no hit, no failure
        all_done = (visited | ~todo).all(1)
        self.s_NL[ids], self.visited_NB[ids] = s_next, visited
        self.age_N[ids], self.identity_N[ids] = age, identity
        self.t_N[ids] += 1
        terminated = failed | all_done | stopped
        truncated = (self.t_N[ids] >= mdp.episode_len) & ~terminated
        self._needs_reset[ids] = terminated | truncated
        obs = self.observe(s_next, self.base_NL[ids], direction)
        info = {"age": age, "age_base": self.age_base_N[ids], "identity": identity, "hit": hit,
                "in_typical_set": in_typical, "direction": direction, "t": self.t_N[ids], "stopped": stopped}
        return obs, reward, terminated, truncated, info

    def move(self, s_RL: torch.Tensor, action_RA: torch.Tensor, direction_R: torch.Tensor) -> torch.Tensor:
        """Eq. 2 for actions ``[k_gen, w1, w2]`` in the box: k_gen made a unit direction (``normalize_gen``) and
        signed with the command (``signed_gen``), k_hyp = ± the unit boundary; with kept directions the move
        loses its part in their span. Differentiable in the action."""
        mdp, L = self.mdp, self.latent_dim
        k_gen, w1, w2 = action_RA[:, :L], action_RA[:, L], action_RA[:, L + 1]
        if mdp.normalize_gen:
            k_gen = k_gen / k_gen.norm(dim=1, keepdim=True).clamp_min(1e-6)
        sign = (1.0 - 2.0 * direction_R.float())[:, None]
        k_hyp = sign * self.boundary_L[None, :]
        if mdp.signed_gen:
            k_gen = sign * k_gen
        s_next = transition(s_RL, k_hyp, k_gen, w1, w2, mdp.inertia)
        if self._kept_basis_LK is None:
            return s_next
        move = s_next - s_RL
        return s_RL + move - (move @ self._kept_basis_LK) @ self._kept_basis_LK.T

    def _check_action(self, action: torch.Tensor, n: int) -> torch.Tensor:
        return check_action(action, n, self.act_dim, self.action_bound, self.device,
                            f"[k_gen (L={self.latent_dim}), w1, w2]")
