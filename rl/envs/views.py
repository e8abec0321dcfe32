"""Generic views on a batched environment core: the gymnasium env (N = 1) and the Tianshou vector env.

A *core* is any object satisfying :class:`BatchedCore` (the three experiments' cores do; a test
checks it). Seeding contract (what makes batched == per-env): row ``i`` of a core draws its episodes
from a counter-based stream keyed by ``(seed_i, episode counter)`` (:func:`row_randint`, kept by
:class:`RowStreams`), and a core built with seed ``s`` gives row ``i`` the seed ``s + i``, which is
exactly the seed Tianshou's ``venv.seed(s)`` hands to env ``i``. So ``BatchedVectorEnv(core.spawn(N, s))``
and ``make_dummy_vector_env(core.spawn, N, s)`` produce the same episodes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.env import BaseVectorEnv, DummyVectorEnv

from rl.envs.core import RowStreams, seeds_for
from utils.errors import UserError

log = logging.getLogger(__name__)


class SingleEnv(gym.Env):
    """A ``gymnasium.Env`` over a core with ``num_envs == 1`` (passes ``check_env``).

    ``reset(seed=s)`` restarts the core's stream with seed ``s``; the action space is seeded
    separately (``env.action_space.seed``), as Tianshou's workers do.
    """

    metadata = {"render_modes": []}

    def __init__(self, core: Any):
        if core.num_envs != 1:
            raise UserError(f"SingleEnv needs a core with num_envs=1, got {core.num_envs}")
        self.core = core
        self.observation_space = copy.deepcopy(core.observation_space)
        self.action_space = copy.deepcopy(core.action_space)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; returns ``(obs_O float32, {})``."""
        super().reset(seed=seed)
        if seed is not None:
            self.core.reseed([seed])
        obs = self.core.reset(None)
        return obs[0].cpu().numpy().copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply a K-vector action; returns ``(obs_O, reward, terminated, truncated, info)``."""
        act = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.core.device)
        obs, rew, term, trunc, info = self.core.step(act.reshape(1, -1), None)
        info_1 = {k: v[0].item() if v[0].numel() == 1 else v[0].cpu().numpy() for k, v in info.items()}
        return (obs[0].cpu().numpy().copy(), float(rew[0]), bool(term[0]), bool(trunc[0]), info_1)


class BatchedVectorEnv(BaseVectorEnv):
    """Hands a batched core to Tianshou's ``Collector`` as ``core.num_envs`` environments.

    There are no workers: each ``step`` is one batched core call. Numpy at the boundary; infos
    are an object array of dicts (one per env, with ``env_id``) as ``BaseVectorEnv`` returns.
    """

    def __init__(self, core: Any):
        # BaseVectorEnv.__init__ builds one worker per env; we deliberately skip it and set the
        # attributes its methods and the Collector read.
        self.core = core
        self.env_num = int(core.num_envs)
        self.wait_num, self.timeout, self.is_async = self.env_num, None, False
        self.waiting_conn, self.waiting_id = [], []
        self.ready_id = list(range(self.env_num))
        self.workers: list[Any] = []
        self.is_closed = False
        # one action space object per env: the Collector samples random actions env by env
        self._action_spaces = [copy.deepcopy(core.action_space) for _ in range(self.env_num)]
        self._obs_space = copy.deepcopy(core.observation_space)

    def get_env_attr(self, key: str, id: int | list[int] | np.ndarray | None = None) -> list[Any]:
        """Per-env attribute list (``action_space`` etc.), as ``BaseVectorEnv`` returns it."""
        self._assert_is_not_closed()
        ids = self._wrap_id(id)
        if key == "action_space":
            return [self._action_spaces[j] for j in ids]
        defaults = {"observation_space": self._obs_space, "metadata": {}, "spec": None,
                    "reward_range": (-float("inf"), float("inf"))}
        value = defaults[key] if key in defaults else getattr(self.core, key)
        return [value for _ in ids]

    def set_env_attr(self, key: str, value: Any, id: Any = None) -> None:
        raise NotImplementedError("BatchedVectorEnv shares one core: set attributes on env.core")

    def _ids(self, id: int | list[int] | np.ndarray | None) -> np.ndarray:
        ids = np.asarray(self._wrap_id(id), dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.env_num):
            raise UserError(f"env ids {ids.tolist()} out of range 0..{self.env_num - 1}")
        return ids

    def reset(
        self, env_id: int | list[int] | np.ndarray | None = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reset envs ``env_id`` (all when None); returns ``(obs_RO, infos_R object array)``.

        ``seed=`` (int for every listed env, as ``DummyVectorEnv`` passes it, or one per env)
        restarts those rows' streams first.
        """
        self._assert_is_not_closed()
        ids = self._ids(env_id)
        seed, options = kwargs.pop("seed", None), kwargs.pop("options", None)
        if kwargs:
            raise TypeError(f"unexpected reset arguments {sorted(kwargs)}: expected seed, options")
        del options  # no reset options exist
        mask = torch.zeros(self.env_num, dtype=torch.bool, device=self.core.device)
        mask[torch.as_tensor(ids, device=self.core.device)] = True
        if seed is not None:
            seeds = [int(seed)] * len(ids) if np.isscalar(seed) else [int(s) for s in seed]
            self.core.reseed(seeds, mask)
        obs = self.core.reset(mask)[torch.as_tensor(ids, device=self.core.device)]
        infos = np.empty(len(ids), dtype=object)
        infos[:] = [{} for _ in ids]
        return obs.cpu().numpy(), infos

    def step(
        self,
        action: np.ndarray | torch.Tensor | None,
        id: int | list[int] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step envs ``id`` (all when None) with ``action`` R×A; numpy out, infos as objects."""
        self._assert_is_not_closed()
        if action is None:
            raise UserError("action must not be None: BatchedVectorEnv is synchronous")
        ids = self._ids(id)
        if len(action) != len(ids):
            raise UserError(f"got {len(action)} actions for {len(ids)} env ids")
        act = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.core.device)
        ids_t = torch.as_tensor(ids, device=self.core.device)
        obs, rew, term, trunc, info = self.core.step(act, ids_t)
        columns = {k: v.cpu().numpy() for k, v in info.items()}
        # Tianshou wants one dict per env: this loop is the numpy boundary, not the env math
        infos = np.empty(len(ids), dtype=object)
        infos[:] = [{**{k: col[i] for k, col in columns.items()}, "env_id": int(j)}
                    for i, j in enumerate(ids)]
        return (obs.cpu().numpy(), rew.cpu().numpy(), term.cpu().numpy(), trunc.cpu().numpy(),
                infos)

    def seed(self, seed: int | list[int] | None = None) -> list[list[int] | None]:
        """Seed env ``i`` with ``seed + i`` (core stream and action space), then reset all,
        exactly as ``DummyVectorEnv.seed`` does through its workers."""
        self._assert_is_not_closed()
        seeds = seeds_for(seed, self.env_num)
        for space, s in zip(self._action_spaces, seeds):
            space.seed(s)
        self.core.reseed(seeds, None)
        self.core.reset(None)
        return [[s] for s in seeds]

    def render(self, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("BatchedVectorEnv has no renderer; decode actions instead")

    def close(self) -> None:
        self.is_closed = True


def make_dummy_vector_env(
    core_fn: Callable[[int, int], Any], num_envs: int, seed: int
) -> DummyVectorEnv:
    """The per-env reference path: ``num_envs`` ``SingleEnv`` s in Tianshou's ``DummyVectorEnv``.

    Args:
        core_fn: ``core_fn(1, seed_i)`` builds a one-env core (e.g. ``core.spawn``).
        num_envs: number of environments.
        seed: env ``i`` gets ``seed + i``, matching ``BatchedVectorEnv(core_fn(num_envs, seed))``.
    """
    return DummyVectorEnv([lambda s=s: SingleEnv(core_fn(1, s)) for s in seeds_for(seed, num_envs)])




def vector_cores(venv: Any) -> list[Any]:
    """The cores behind a vector env: the one core of a ``BatchedVectorEnv``, or one per ``SingleEnv`` of
    a ``DummyVectorEnv`` (in env order)."""
    if isinstance(venv, BatchedVectorEnv):
        return [venv.core]
    return list(venv.get_env_attr("core"))


def stream_state(venv: Any) -> dict[str, torch.Tensor] | None:
    """Every env's random stream (seed, episodes started) in env order, or None when a core keeps no
    :class:`~rl.envs.core.RowStreams`."""
    cores = vector_cores(venv)
    if not all(isinstance(core, RowStreams) for core in cores):
        return None
    states = [core.stream_state() for core in cores]
    return {key: torch.cat([s[key] for s in states]) for key in ("seeds", "counters")}


def replay_streams(venv: Any, state: dict[str, torch.Tensor]) -> None:
    """Restore :func:`stream_state` so each env's next reset starts again the episode it was in."""
    start = 0
    for core in vector_cores(venv):
        n = core.num_envs
        core.replay_streams({key: value[start:start + n] for key, value in state.items()})
        start += n
    if start != len(state["seeds"]):
        raise UserError(f"saved streams are for {len(state['seeds'])} envs, this vector env has {start}")
