"""The batched-core contract (:class:`BatchedCore`) and what every core shares: per-row random streams,
row masks and action checks.

Seeding contract: row ``i`` of a core draws its episodes from a counter-based stream keyed by
``(seed_i, episode counter)`` (:func:`row_randint`, bookkept by :class:`RowStreams`), and a core built
with seed ``s`` gives row ``i`` the seed ``s + i`` (:func:`seeds_for`), exactly the seed Tianshou's
``venv.seed(s)`` hands to env ``i``; so the batched env and the per-env reference draw the same episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from utils.errors import UserError

_M32 = 0xFFFFFFFF


@runtime_checkable
class BatchedCore(Protocol):
    """N episodes of one environment held as tensors on one device; every network runs once per step.

    Attributes: ``num_envs`` N, ``device``, ``obs_dim`` O, ``act_dim`` A, ``action_bound``, and
    ``observation_space`` / ``action_space``: the gymnasium spaces of ONE env.
    Optionally ``to(device)``: the same core with its data and networks on ``device`` (the experiments'
    cores have it; ``rl.train device=...`` moves a builder's cores with it, numpy only at Tianshou's side).
    """

    num_envs: int
    obs_dim: int
    act_dim: int
    action_bound: float
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box

    @property
    def device(self) -> torch.device: ...

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes in the masked rows (all when None); N×O observations of all rows."""

    def step(self, action_RA: torch.Tensor, ids_R: torch.Tensor | None = None) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Step rows ``ids`` (all when None) with one batched call: ``(obs_RO, reward_R, terminated_R,
        truncated_R, info)``, info a dict of R-length tensors."""

    def reseed(self, seeds: Sequence[int], mask_N: torch.Tensor | None = None) -> None:
        """Restart the random streams of the masked rows (all when None), one seed per row."""

    def spawn(self, num_envs: int, seed: int | Sequence[int]) -> "BatchedCore":
        """A new core with the same data and networks (e.g. test envs)."""


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x * c) mod 2^32 split in 16-bit halves so no int64 product can overflow
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # "lowbias32" integer hash (C. Wellons): good avalanche, only shifts/xors/multiplies
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_randint(
    seeds_N: torch.Tensor, counters_N: torch.Tensor, stream: int, high: int
) -> torch.Tensor:
    """Counter-based random ints, one per row, with no Python loop over rows.

    Args:
        seeds_N: N int64 non-negative row seeds.
        counters_N: N int64 episode counters.
        stream: small int separating independent draws of one episode (digit, task, ...).
        high: exclusive upper bound (≤ 2^20 keeps the modulo bias below 1e-6 relative).
    Returns:
        N int64 in ``[0, high)``; a pure function of (seed, counter, stream).
    """
    h = _mix32((seeds_N & _M32) ^ _mix32((seeds_N >> 32) & _M32))
    h = _mix32(h ^ (counters_N & _M32))
    h = _mix32(h ^ ((stream * 0x9E3779B9) & _M32))
    return torch.remainder(h, int(high))


def seeds_for(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """Tianshou's convention: int ``s`` seeds env ``i`` with ``s + i``; None draws fresh seeds."""
    if seed is None:
        return [int(s) for s in np.random.SeedSequence().generate_state(n, dtype=np.uint32)]
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise UserError(f"got {len(seeds)} seeds for {n} environments: expected one per env")
    return seeds


class RowStreams:
    """The per-row episode streams of a batched core (``_seeds``, ``_counters``, ``_needs_reset``)
    and its ``reseed``; a core calls ``_init_streams(seed)`` once ``num_envs`` and ``device`` exist."""

    def _init_streams(self, seed: int | Sequence[int]) -> None:
        n, dev = self.num_envs, self.device
        self._seeds = torch.zeros(n, dtype=torch.int64, device=dev)
        self._counters = torch.zeros(n, dtype=torch.int64, device=dev)
        self._needs_reset = torch.ones(n, dtype=torch.bool, device=dev)
        self.reseed(seeds_for(seed, n), None)

    def reseed(self, seeds: Sequence[int], mask_N: torch.Tensor | None = None) -> None:
        """Restart the streams of the masked rows (all when None), one seed per row; reset them next."""
        rows = mask_rows(mask_N, self.num_envs, self.device)
        seeds_t = torch.as_tensor([int(s) for s in seeds], dtype=torch.int64, device=self.device)
        if seeds_t.shape != rows.shape or (seeds_t < 0).any():
            raise UserError(f"need {len(rows)} non-negative seeds (one per reseeded row), got {seeds_t.tolist()}")
        self._seeds[rows], self._counters[rows], self._needs_reset[rows] = seeds_t, 0, True

    def stream_state(self) -> dict[str, torch.Tensor]:
        """Every row's stream (seed, episodes started), for a training state to carry (CPU copies)."""
        return {"seeds": self._seeds.cpu().clone(), "counters": self._counters.cpu().clone()}

    def replay_streams(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`stream_state` one episode back: the next reset of each row starts again the
        episode that row was in (the same draws), so a resumed run continues the saved one's streams."""
        seeds, counters = state["seeds"].to(self.device), state["counters"].to(self.device)
        if seeds.shape != self._seeds.shape or counters.shape != self._counters.shape:
            raise UserError(f"saved streams are for {len(seeds)} rows, this core has {self.num_envs}")
        self._seeds[:], self._counters[:] = seeds, (counters - 1).clamp_min(0)
        self._needs_reset[:] = True


def mask_rows(mask_N: torch.Tensor | None, num_envs: int, device: torch.device) -> torch.Tensor:
    """Row indices selected by a bool mask of shape (num_envs,) (all rows when None)."""
    if mask_N is None:
        return torch.arange(num_envs, device=device)
    mask = torch.as_tensor(mask_N, device=device)
    if mask.dtype != torch.bool or mask.shape != (num_envs,):
        raise UserError(f"mask must be a bool tensor of shape ({num_envs},), got {mask.dtype} {tuple(mask.shape)}")
    return mask.nonzero()[:, 0]


def check_action(action: torch.Tensor, n: int, act_dim: int, bound: float, device: torch.device,
                 layout: str) -> torch.Tensor:
    """An n×act_dim float action on ``device``, clipped to [-bound, bound]; NaN/inf or a wrong
    shape raise ValueError (``layout`` names the columns in the message)."""
    action = torch.as_tensor(action, dtype=torch.float32, device=device)
    if action.shape != (n, act_dim):
        raise UserError(f"action must be {n}×{act_dim} (rows × {layout}), got {tuple(action.shape)}")
    if not torch.isfinite(action).all():
        kind = "NaN" if torch.isnan(action).any() else "inf"
        raise UserError(f"action contains {kind}: expected finite values (clipped to [-{bound}, {bound}]); "
                        "the policy diverged or was fed bad observations")
    return action.clamp(-bound, bound)

