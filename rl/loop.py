"""The one training loop of every agent in :data:`rl.agents.AGENTS`: Tianshou's Collector + trainer,
with the best policy, a resumable training state and a learning curve kept in the run folder.

Files in ``run_dir``: ``policy.pt`` (best test score, or the final epoch's policy with ``keep='last'``; atomic
writes), ``train_state.pt`` (after every epoch: networks, optimizers, replay buffer, RNG states, counters, best
score, curve), ``curve.json``
(training return per stretch of env steps, test return per epoch) and TensorBoard events.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import types
import unittest.mock
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tianshou.trainer
import torch
import tqdm
from tianshou.algorithm import Algorithm
from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.trainer import OffPolicyTrainerParams, OnPolicyTrainerParams
from tianshou.utils import TensorboardLogger
from tianshou.utils.torch_utils import policy_within_training_step
from torch.utils.tensorboard import SummaryWriter

from configs.schema import RLLoopConfig
from rl.agents import POLICY_FILE, save_policy
from rl.envs.views import replay_streams, stream_state
from utils.errors import MissingFileError, UserError
from utils.io import atomic_torch_save, atomic_write_text
from utils.seeding import rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)
TRAIN_STATE_FILE = "train_state.pt"
CURVE_FILE = "curve.json"
_STATE_FORMAT = "latentnav-train-state/1"
TEST_SEED_OFFSET = 1_000_003  # test envs are re-seeded with seed + this before every test
RESUME_SEED_STRIDE = 7919  # resumed train envs restart with seed + this · epoch
CURVE_POINTS = 200  # about this many training rows in curve.json per run


def _collectors(algorithm: Algorithm, train_envs: Any, test_envs: Any, buffer_size: int):
    n_train, n_test = len(train_envs), len(test_envs)
    train_buf = VectorReplayBuffer(max(buffer_size, n_train), n_train)
    # the test buffer only feeds episode statistics: a few hundred steps per env is plenty
    test_buf = VectorReplayBuffer(512 * n_test, n_test)
    train_collector = Collector[CollectStats](algorithm, train_envs, train_buf, exploration_noise=True)
    return train_collector, Collector[CollectStats](algorithm, test_envs, test_buf)


@contextlib.contextmanager
def _quiet_tqdm(quiet: bool):
    # Tianshou 2.0.1's off-policy update bar passes its own `disable=` and ignores show_progress,
    # flooding logs; swap the trainer module's tqdm for one that stays silent.
    if not quiet:
        yield
        return
    shim = types.SimpleNamespace(tqdm=lambda *args, **kwargs: tqdm.tqdm(*args, **{**kwargs, "disable": True}))
    with unittest.mock.patch.object(tianshou.trainer, "tqdm", shim):
        yield


class Curve:
    """Rows of ``curve.json``: training return averaged over stretches of at least ``every`` env steps
    (``env_steps``, ``episodes`` seen, ``train_return``, ``wall_s``); a test adds ``test_return`` to a row."""

    def __init__(self, every: int, rows: list[dict] | None = None, start: float | None = None):
        self.every, self.rows = max(1, int(every)), list(rows or [])
        self.start = time.time() - (self.rows[-1]["wall_s"] if self.rows else 0.0) if start is None else start
        self._sum, self._count, self._episodes = 0.0, 0, self.rows[-1]["episodes"] if self.rows else 0
        self._last = self.rows[-1]["env_steps"] if self.rows else 0

    def train(self, returns: np.ndarray, env_step: int) -> None:
        self._sum, self._count = self._sum + float(np.sum(returns)), self._count + len(returns)
        self._episodes += len(returns)
        if env_step - self._last >= self.every and self._count:
            self._flush(env_step)

    def test(self, mean_return: float, env_step: int) -> None:
        if self._count or not self.rows or self.rows[-1]["env_steps"] != env_step:
            self._flush(env_step)
        self.rows[-1]["test_return"] = mean_return

    def _flush(self, env_step: int) -> None:
        row = {"env_steps": int(env_step), "episodes": int(self._episodes), "wall_s": round(time.time() - self.start, 2)}
        if self._count:
            row["train_return"] = self._sum / self._count
        self.rows.append(row)
        self._sum, self._count, self._last = 0.0, 0, env_step


class _RunLogger(TensorboardLogger):
    """Tianshou's TensorBoard logger that also feeds the :class:`Curve` and, on resume, restores the
    trainer's counters from the training state (not from the event files, which a kill may leave one
    epoch ahead or behind)."""

    def __init__(self, writer: SummaryWriter, curve: Curve, counters: tuple[int, int, int] | None = None):
        super().__init__(writer, save_interval=1)
        self.curve, self._counters = curve, counters

    def log_training_data(self, log_data: dict, step: int) -> None:
        self.curve.train(np.asarray(log_data.get("returns", [])), step)
        super().log_training_data(log_data, step)

    def restore_data(self) -> tuple[int, int, int]:
        if self._counters is None:
            return super().restore_data()
        epoch, env_step, gradient_step = self._counters
        self.last_save_step = self.last_log_test_step = epoch
        self.last_log_update_step, self.last_log_training_step = gradient_step, env_step
        return self._counters


def load_train_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The training state :func:`train` writes each epoch (``TRAIN_STATE_FILE`` in ``run_dir``).

    Raises :class:`MissingFileError` when there is none and :class:`UserError` when the file is not one.
    """
    path = Path(run_dir) / TRAIN_STATE_FILE
    if not path.is_file():
        raise MissingFileError(f"cannot resume: '{path}' does not exist (the run stopped before its first epoch "
                               "ended; start it again instead)")
    try:
        # our own file: it holds the pickled replay buffer and RNG states, hence weights_only=False
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise UserError(f"cannot resume: '{path}' is not a readable training state ({type(err).__name__}: {err})")
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise UserError(f"cannot resume: '{path}' is not a latentnav training state (format {_STATE_FORMAT})")
    return state


def _algorithm_counters(algorithm: Algorithm) -> dict[str, int | float]:
    # private numbers an algorithm keeps outside its state_dict (TD3's update count for the delayed actor)
    return {name: value for name, value in vars(algorithm).items()
            if name.startswith("_") and type(value) in (int, float)}


def _device_of(algorithm: Algorithm) -> torch.device:
    # where the networks are (Tianshou's collector and buffer stay in numpy on the host)
    return next(algorithm.parameters(), torch.empty(0)).device


def split_budget(loop: RLLoopConfig, off_policy: bool, n_envs: int) -> tuple[int, int, int]:
    """(warm-up, steps per collection, steps after the warm-up) of a run; a budget that leaves no collection
    after the warm-up, or no epoch, is refused."""
    # whole batched steps: the Collector would overshoot a non-multiple anyway (and warn)
    warmup = math.ceil(loop.warmup_steps / n_envs) * n_envs if off_policy else 0
    collect = loop.collect_steps or (n_envs if off_policy else 2048)
    budget = loop.total_steps - warmup
    if budget < collect or loop.epochs < 1:
        raise UserError(f"total_steps={loop.total_steps} leaves {budget} steps after warm-up for {loop.epochs} "
                        f"epochs: expected at least one collection of {collect} steps")
    return warmup, collect, budget


def _start(algorithm, train_envs, train_collector, state, warmup: int, seed: int, run_dir: Path,
           warmup_actions: str = "random") -> None:
    if state is None:
        train_collector.reset()
        if warmup > 0:  # 'policy': sampled as in training (not the deterministic mode Tianshou acts with outside it)
            with policy_within_training_step(algorithm.policy):
                train_collector.collect(n_step=warmup, random=warmup_actions == "random")
        return
    algorithm.load_state_dict(state["algorithm"])
    for name, value in (state.get("counters_of_algorithm") or {}).items():
        setattr(algorithm, name, value)
    train_collector.buffer = state["buffer"]
    if state.get("streams") is not None:
        # each train env starts again the episode it was in (the trainer's reset draws it): with
        # one-step episodes (experiment B) the run continues exactly as if it had not stopped
        replay_streams(train_envs, state["streams"])
    else:  # a state written before streams were saved
        train_envs.seed(seed + RESUME_SEED_STRIDE * state["counters"][0])
        train_collector.reset(reset_buffer=False)
    set_rng_state(state["rng"])
    log.warning("resuming %s at epoch %d (%d env steps after warm-up, best test reward %.3f)",
                run_dir, state["counters"][0], state["counters"][1], state["best"]["score"])


class _Hooks:
    """The trainer's callbacks: test-env seeding, scoring, best policy, training state (one run's bookkeeping)."""

    def __init__(self, algorithm, run_dir: Path, seed: int, test_envs, test_collector, train_collector, state,
                 warmup: int, curve: Curve, epoch_hook, keep: str = "best"):
        self.algorithm, self.run_dir, self.seed, self.warmup, self.curve = algorithm, run_dir, seed, warmup, curve
        self.keep = keep
        self.test_envs, self.test_collector, self.train_collector, self.epoch_hook = (
            test_envs, test_collector, train_collector, epoch_hook)
        self.best = {"score": -math.inf, "std": 0.0} if state is None else dict(state["best"])
        self.done = {"epoch": 0, "env_step": 0} if state is None else dict(zip(("epoch", "env_step"), state["counters"][:2]))
        self.last_test = {"score": -math.inf, "std": 0.0}

    def test_fn(self, epoch: int, env_step: int | None) -> None:
        # same test episodes at every test step, so "best" compares policies, not luck
        self.test_envs.seed(self.seed + TEST_SEED_OFFSET)
        self.test_collector.reset_env()

    def score_fn(self, stats: CollectStats) -> float:
        self.last_test.update(score=float(stats.returns_stat.mean), std=float(stats.returns_stat.std))
        self.curve.test(self.last_test["score"], self.done["env_step"])
        return self.last_test["score"]

    def save_best_fn(self, algo: Algorithm) -> None:
        # the trainer forgets its best score on resume; the training state keeps it
        if self.last_test["score"] > self.best["score"]:
            self.best.update(self.last_test)
            if self.keep == "best" or not (self.run_dir / POLICY_FILE).exists():  # 'last': the start, until an epoch
                save_policy(algo, self.run_dir / POLICY_FILE)

    def save_state_fn(self, epoch: int, env_step: int, gradient_step: int) -> str:
        path, self.done["epoch"], self.done["env_step"] = self.run_dir / TRAIN_STATE_FILE, epoch, env_step
        if self.epoch_hook is not None:
            self.epoch_hook(self.algorithm, epoch)
        if self.keep == "last":
            save_policy(self.algorithm, self.run_dir / POLICY_FILE)
        atomic_torch_save({"format": _STATE_FORMAT, "algorithm": self.algorithm.state_dict(),
                           "counters_of_algorithm": _algorithm_counters(self.algorithm),
                           "buffer": self.train_collector.buffer, "best": dict(self.best), "rng": rng_state(),
                           "streams": stream_state(self.train_collector.env),
                           "counters": (epoch, env_step, gradient_step), "warmup": self.warmup,
                           "curve": self.curve.rows}, path)
        return str(path)


def _trainer_params(loop: RLLoopConfig, off_policy: bool, train_collector, test_collector, hooks: _Hooks,
                    collect: int, budget: int, state, logger: _RunLogger):
    common = {
        "training_collector": train_collector, "test_collector": test_collector,
        "max_epochs": loop.epochs, "epoch_num_steps": math.ceil(budget / loop.epochs),
        "collection_step_num_env_steps": collect, "batch_size": loop.batch_size,
        "test_step_num_episodes": loop.test_episodes or 4 * len(test_collector.env),
        "save_best_fn": hooks.save_best_fn, "compute_score_fn": hooks.score_fn,
        "save_checkpoint_fn": hooks.save_state_fn, "resume_from_log": state is not None,
        "test_fn": hooks.test_fn, "verbose": False, "show_progress": loop.show_progress, "logger": logger,
    }
    if off_policy:
        return OffPolicyTrainerParams(update_step_num_gradient_steps_per_sample=loop.update_per_step, **common)
    return OnPolicyTrainerParams(update_step_num_repetitions=loop.repeat, **common)


def train(algorithm: Algorithm, train_envs: Any, test_envs: Any, run_dir: str | os.PathLike, loop: RLLoopConfig,
          *, seed: int = 0, num_threads: int | None = 1, resume: bool = False,
          epoch_hook: Callable[[Algorithm, int], None] | None = None) -> dict[str, Any]:
    """Train with Tianshou's Collector + trainer, keeping the best policy in ``run_dir``.

    Args:
        algorithm: from :func:`rl.agents.build_algorithm` (seed before building for reproducible nets), its
            networks on any device; Tianshou's collector and replay buffer hold numpy on the host, and the
            envs take and give numpy, so the device shows only in the networks and the batched cores.
        train_envs, test_envs: Tianshou vector envs (``BatchedVectorEnv`` or the reference
            ``DummyVectorEnv``); train envs seeded with ``seed``, test envs re-seeded with
            ``seed + TEST_SEED_OFFSET`` before every test (the same test episodes each time).
        loop: budget and collection settings (:class:`configs.schema.RLLoopConfig`; the env-building
            fields are not read here).
        num_threads: ``torch.set_num_threads`` (1 is 5-10× faster for small nets on 2 cores).
        resume: continue from ``run_dir/train_state.pt`` (e.g. after a kill -9): networks, optimizers,
            replay buffer, RNG states, the trainer's counters, the best test score and the curve.
            Episodes that were running are not restored: the train envs restart with seed
            ``seed + RESUME_SEED_STRIDE · epoch``, so a resumed run is reproducible, not bit-equal.
        epoch_hook: called as ``epoch_hook(algorithm, epoch)`` after every epoch (e.g. figures).
    Returns:
        ``best_reward``, ``best_reward_std``, ``env_steps`` (including warm-up), ``update_rounds``,
        ``test_episodes``, ``epochs`` and ``resumed_from_epoch`` (None for a fresh run).
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = load_train_state(run_dir) if resume else None
    seed_everything(seed)
    train_envs.seed(seed)
    off_policy = isinstance(algorithm, OffPolicyAlgorithm)
    warmup, collect, budget = split_budget(loop, off_policy, len(train_envs))
    buffer = loop.buffer_size if off_policy else collect + len(train_envs)
    train_collector, test_collector = _collectors(algorithm, train_envs, test_envs, buffer)
    curve = Curve(loop.total_steps / CURVE_POINTS, None if state is None else state.get("curve"))
    hooks = _Hooks(algorithm, run_dir, seed, test_envs, test_collector, train_collector, state, warmup, curve,
                   epoch_hook, loop.keep)
    _start(algorithm, train_envs, train_collector, state, warmup, seed, run_dir, loop.warmup_actions)
    writer = SummaryWriter(log_dir=str(run_dir))
    params = _trainer_params(loop, off_policy, train_collector, test_collector, hooks, collect, budget, state,
                             _RunLogger(writer, curve, None if state is None else tuple(state["counters"])))
    try:
        with _quiet_tqdm(not loop.show_progress):
            stats = algorithm.run_training(params)
    finally:
        writer.close()
    atomic_write_text(run_dir / CURVE_FILE, json.dumps(curve.rows))
    best, env_steps = hooks.best, hooks.done["env_step"] + (state["warmup"] if state is not None else warmup)
    log.info("trained %s on %s for %d env steps: best test reward %.3f ± %.3f; policy in %s",
             type(algorithm).__name__, _device_of(algorithm), env_steps, best["score"], best["std"],
             run_dir / POLICY_FILE)
    return {"best_reward": best["score"], "best_reward_std": best["std"], "env_steps": env_steps,
            "update_rounds": int(stats.update_step), "test_episodes": int(stats.test_episode),
            "epochs": hooks.done["epoch"], "resumed_from_epoch": None if state is None else state["counters"][0]}
