"""Tianshou 2.x agents for the latent-space environments: builders, training, saving, acting.

``build_algorithm("td3" | "ppo", obs_dim, act_dim, action_bound, **hparams)`` takes plain values
only. Policies output actions in [-1, 1] and Tianshou's ``map_action`` scales them to the env's
``[-action_bound, action_bound]`` box, so exploration noise, TD3's policy noise and the noise clip
are in those normalised units (sigma 0.3 is 0.9 in z units for a bound of 3).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import types
import unittest.mock
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import tianshou.trainer
import torch
import tqdm
from tianshou.algorithm import PPO, TD3, Algorithm
from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm, Policy
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.exploration import GaussianNoise
from tianshou.trainer import OffPolicyTrainerParams, OnPolicyTrainerParams
from tianshou.utils import TensorboardLogger
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
)
from torch import nn
from torch.distributions import Independent, Normal
from torch.utils.tensorboard import SummaryWriter

from lightning_modules.runs import atomic_torch_save

log = logging.getLogger(__name__)

POLICY_FILE = "policy.pt"
TRAIN_STATE_FILE = "train_state.pt"
_FORMAT = "latentnav-policy/1"
_STATE_FORMAT = "latentnav-train-state/1"
DEFAULTS: dict[str, dict[str, Any]] = {
    # reference TD3 of experiment B (SPEC §1); exploration_noise 0.3 beat 0.1 in the prototype
    "td3": {"hidden_sizes": (256, 256), "actor_lr": 1e-3, "critic_lr": 1e-3, "gamma": 0.99,
            "tau": 0.005, "policy_noise": 0.2, "noise_clip": 0.5, "update_actor_freq": 2,
            "exploration_noise": 0.3, "n_step": 1},
    # SPEC §5: tanh-bounded mean and log_std ≈ -1 at the start, else "clip" bounding drifts
    "ppo": {"hidden_sizes": (256, 256), "lr": 3e-4, "gamma": 0.99, "gae_lambda": 0.95,
            "eps_clip": 0.2, "vf_coef": 0.5, "ent_coef": 0.0, "max_grad_norm": 0.5,
            "init_log_std": -1.0, "value_clip": False, "advantage_normalization": True,
            # warm start (None: Tianshou's init): the mean action in every state at the start, box units
            "init_mean": None},
}


def _spaces(
    obs_dim: int, act_dim: int, action_bound: float
) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    if not (obs_dim >= 1 and act_dim >= 1 and math.isfinite(action_bound) and action_bound > 0):
        raise ValueError(f"need obs_dim >= 1, act_dim >= 1 and a finite action_bound > 0, got "
                         f"{obs_dim}, {act_dim}, {action_bound}")
    obs = gym.spaces.Box(-np.inf, np.inf, (int(obs_dim),), np.float32)
    act = gym.spaces.Box(-action_bound, action_bound, (int(act_dim),), np.float32)
    return obs, act


def _resolve(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    if name not in DEFAULTS:
        raise ValueError(f"unknown algorithm {name!r}: expected one of {sorted(DEFAULTS)}")
    unknown = sorted(set(hparams) - set(DEFAULTS[name]))
    if unknown:
        raise KeyError(f"unknown {name} hyper-parameter(s) {unknown}: allowed "
                       f"{sorted(DEFAULTS[name])}")
    resolved = {**DEFAULTS[name], **hparams}
    resolved["hidden_sizes"] = [int(h) for h in resolved["hidden_sizes"]]
    return resolved


def _build_td3(obs_space: gym.spaces.Box, act_space: gym.spaces.Box, hp: dict[str, Any]) -> TD3:
    obs_dim, act_dim, hs = obs_space.shape[0], act_space.shape[0], hp["hidden_sizes"]
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hs), action_shape=act_dim,
        max_action=1.0)  # tanh output in [-1, 1]; map_action scales it to the box

    def critic() -> ContinuousCritic:
        return ContinuousCritic(preprocess_net=Net(
            state_shape=obs_dim, action_shape=act_dim, hidden_sizes=hs, concat=True))

    noise = GaussianNoise(sigma=hp["exploration_noise"]) if hp["exploration_noise"] > 0 else None
    policy = ContinuousDeterministicPolicy(
        actor=actor, exploration_noise=noise, action_space=act_space,
        observation_space=obs_space, action_scaling=True, action_bound_method="clip")
    return TD3(policy=policy, policy_optim=AdamOptimizerFactory(lr=hp["actor_lr"]),
               critic=critic(), critic_optim=AdamOptimizerFactory(lr=hp["critic_lr"]),
               critic2=critic(), critic2_optim=AdamOptimizerFactory(lr=hp["critic_lr"]),
               tau=hp["tau"], gamma=hp["gamma"], policy_noise=hp["policy_noise"],
               update_actor_freq=hp["update_actor_freq"], noise_clip=hp["noise_clip"],
               n_step_return_horizon=hp["n_step"])


def gaussian_dist(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    """Diagonal Gaussian over the action vector (module level so policies stay picklable)."""
    loc, scale = loc_scale
    return Independent(Normal(loc, scale), 1)


def _per_dim(name: str, value: Any, act_dim: int) -> torch.Tensor:
    # a scalar for every action entry, or one value per entry
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if len(t) == 1:
        t = t.expand(act_dim)
    if len(t) != act_dim or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be a finite number or {act_dim} of them (one per action entry), "
                         f"got {len(t)} value(s)")
    return t


def _init_gaussian(actor: ContinuousActorProbabilistic, act_space: gym.spaces.Box, init_mean: Any,
                   init_log_std: Any) -> None:
    """Log std per action entry; with ``init_mean`` (box units) the tanh-bounded mean starts there in
    every state: the head's weights shrink ×0.01 and its bias is ``atanh(init_mean / bound)``."""
    act_dim, bound = act_space.shape[0], float(act_space.high[0])
    with torch.no_grad():
        actor.sigma_param.copy_(_per_dim("init_log_std", init_log_std, act_dim).view_as(actor.sigma_param))
        if init_mean is None:
            return
        mean = _per_dim("init_mean", init_mean, act_dim) / bound
        if mean.abs().max() >= 1.0:
            raise ValueError(f"init_mean must lie strictly inside the action box (-{bound:g}, {bound:g}), "
                             f"got an entry of {mean.abs().max().item() * bound:g}")
        head = [m for m in actor.mu.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.mul_(0.01)
        head.bias.copy_(torch.atanh(mean))


def _build_ppo(obs_space: gym.spaces.Box, act_space: gym.spaces.Box, hp: dict[str, Any]) -> PPO:
    obs_dim, act_dim, hs = obs_space.shape[0], act_space.shape[0], hp["hidden_sizes"]
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hs, activation=nn.Tanh),
        action_shape=act_dim, max_action=1.0, unbounded=False)
    _init_gaussian(actor, act_space, hp["init_mean"], hp["init_log_std"])
    critic = ContinuousCritic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hs, activation=nn.Tanh))
    with warnings.catch_warnings():
        # Tianshou warns about a bounded mean plus action scaling; SPEC §5 wants exactly that
        warnings.filterwarnings("ignore", message="action_scaling and action_bound_method")
        policy = ProbabilisticActorPolicy(
            actor=actor, dist_fn=gaussian_dist, deterministic_eval=True, action_space=act_space,
            observation_space=obs_space, action_scaling=True, action_bound_method="clip")
    return PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=hp["lr"]),
               eps_clip=hp["eps_clip"], value_clip=hp["value_clip"],
               advantage_normalization=hp["advantage_normalization"], vf_coef=hp["vf_coef"],
               ent_coef=hp["ent_coef"], max_grad_norm=hp["max_grad_norm"],
               gae_lambda=hp["gae_lambda"], gamma=hp["gamma"])


def build_algorithm(
    name: str, obs_dim: int, act_dim: int, action_bound: float, **hparams: Any
) -> Algorithm:
    """Build a Tianshou TD3 (default of experiment B) or PPO algorithm from plain values.

    Args:
        name: ``"td3"`` or ``"ppo"``.
        obs_dim, act_dim: observation width O and action width A.
        action_bound: the env's action box is ``[-b, b]^A``.
        **hparams: overrides of ``DEFAULTS[name]`` (unknown keys raise ``KeyError``).
    Returns:
        The algorithm; ``algorithm.latentnav_spec`` records how to rebuild it.
    """
    name = str(name).lower()
    hp = _resolve(name, hparams)
    obs_space, act_space = _spaces(obs_dim, act_dim, float(action_bound))
    algorithm = (_build_td3 if name == "td3" else _build_ppo)(obs_space, act_space, hp)
    algorithm.latentnav_spec = {"name": name, "obs_dim": int(obs_dim), "act_dim": int(act_dim),
                                "action_bound": float(action_bound), "hparams": hp}
    return algorithm


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy's global RNG (Tianshou's GaussianNoise uses it) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_policy(algorithm: Algorithm, path: str | os.PathLike) -> Path:
    """Atomically write the policy weights plus the builder spec to ``path``."""
    path = Path(path)
    spec = getattr(algorithm, "latentnav_spec", None)
    if spec is None:
        raise ValueError("algorithm was not made by build_algorithm: no latentnav_spec to save")
    weights = {k: v.detach().cpu() for k, v in algorithm.policy.state_dict().items()}
    payload = {"format": _FORMAT, **spec, "hparams": dict(spec["hparams"]), "state_dict": weights}
    atomic_torch_save(payload, path)  # readers never see a half-written file
    return path


def load_policy(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Policy:
    """Rebuild a saved policy (file or run folder holding ``policy.pt``), in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no policy file at {path}: expected a {POLICY_FILE} or run folder")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a latentnav policy file (format {_FORMAT})")
    algorithm = build_algorithm(payload["name"], payload["obs_dim"], payload["act_dim"],
                                payload["action_bound"], **payload["hparams"])
    policy = algorithm.policy.to(map_location)
    policy.load_state_dict(payload["state_dict"])
    return policy.eval()


def _map_action(policy: Policy, act_NA: torch.Tensor) -> torch.Tensor:
    # torch twin of Policy.map_action (which returns numpy): bound, then scale to the box
    if policy.action_bound_method == "clip":
        act_NA = act_NA.clamp(-1.0, 1.0)
    elif policy.action_bound_method == "tanh":
        act_NA = torch.tanh(act_NA)
    if policy.action_scaling:
        low = torch.as_tensor(policy.action_space.low, device=act_NA.device)
        high = torch.as_tensor(policy.action_space.high, device=act_NA.device)
        act_NA = low + (high - low) * (act_NA + 1.0) / 2.0
    return act_NA


def act(algorithm_or_policy: Algorithm | Policy, obs_NO: torch.Tensor) -> torch.Tensor:
    """Deterministic actions (no exploration noise; PPO uses its mean) for a batch.

    Args:
        algorithm_or_policy: a TD3/PPO algorithm or its policy.
        obs_NO: N×O observations (any device).
    Returns:
        N×A float actions in the env's box, on ``obs_NO``'s device.
    """
    policy = algorithm_or_policy.policy if isinstance(algorithm_or_policy, Algorithm) \
        else algorithm_or_policy
    device = next(policy.parameters()).device
    obs = torch.as_tensor(obs_NO, dtype=torch.float32, device=device)
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            if isinstance(policy, ContinuousDeterministicPolicy):
                raw = policy.actor(obs)[0]
            elif isinstance(policy, ProbabilisticActorPolicy):
                raw = policy.dist_fn(policy.actor(obs)[0]).mode
            else:
                raise TypeError(f"act() supports TD3/PPO policies, got {type(policy).__name__}")
    finally:
        policy.train(was_training)
    return _map_action(policy, raw).to(torch.as_tensor(obs_NO).device)


def _collectors(
    algorithm: Algorithm, train_envs: Any, test_envs: Any, buffer_size: int
) -> tuple[Collector, Collector]:
    n_train, n_test = len(train_envs), len(test_envs)
    train_buf = VectorReplayBuffer(max(buffer_size, n_train), n_train)
    # the test buffer only feeds episode statistics: a few hundred steps per env is plenty
    test_buf = VectorReplayBuffer(512 * n_test, n_test)
    train_collector = Collector[CollectStats](algorithm, train_envs, train_buf,
                                              exploration_noise=True)
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


class _ResumableLogger(TensorboardLogger):
    """Tianshou's TensorBoard logger that saves a training state every epoch and, on resume,
    restores the trainer's counters from that state (not from the event files, which a kill
    may leave one epoch ahead or behind)."""

    def __init__(self, writer: SummaryWriter, counters: tuple[int, int, int] | None = None):
        super().__init__(writer, save_interval=1)
        self._counters = counters

    def restore_data(self) -> tuple[int, int, int]:
        if self._counters is None:
            return super().restore_data()
        epoch, env_step, gradient_step = self._counters
        self.last_save_step = self.last_log_test_step = epoch
        self.last_log_update_step, self.last_log_train_step = gradient_step, env_step
        return self._counters


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def load_train_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The training state ``train`` writes each epoch (``TRAIN_STATE_FILE`` in ``run_dir``).

    Raises FileNotFoundError when there is none and ValueError when the file is not one.
    """
    path = Path(run_dir) / TRAIN_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: '{path}' does not exist (the run stopped before its first epoch "
                                "ended; start it again instead)")
    try:
        # our own file: it holds the pickled replay buffer and RNG states, hence weights_only=False
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"cannot resume: '{path}' is not a readable training state ({type(err).__name__}: {err})")
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise ValueError(f"cannot resume: '{path}' is not a latentnav training state (format {_STATE_FORMAT})")
    return state


def train(
    algorithm: Algorithm,
    train_envs: Any,
    test_envs: Any,
    run_dir: str | os.PathLike,
    *,
    total_steps: int = 100_000,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    buffer_size: int = 100_000,
    warmup_steps: int = 1_000,
    collect_steps: int | None = None,
    update_per_step: float = 1.0,
    repeat: int = 10,
    test_episodes: int | None = None,
    num_threads: int | None = 1,
    show_progress: bool = False,
    resume: bool = False,
    epoch_hook: Callable[[Algorithm, int], None] | None = None,
) -> dict[str, Any]:
    """Train with Tianshou's Collector + trainer, keeping the best policy in ``run_dir``.

    Args:
        algorithm: from :func:`build_algorithm` (seed before building for reproducible nets).
        train_envs, test_envs: Tianshou vector envs (``BatchedVectorEnv`` or the reference
            ``DummyVectorEnv``); train envs seeded with ``seed``, test envs re-seeded with
            ``seed + 1_000_003`` before every test step (the same test episodes each time).
        run_dir: receives TensorBoard events, ``policy.pt`` (best test score, atomic writes)
            and ``train_state.pt`` after every epoch.
        total_steps: env-step budget including off-policy warm-up; split into ``epochs``.
        batch_size: gradient mini-batch. buffer_size: off-policy replay size.
        warmup_steps: off-policy random-action steps before training.
        collect_steps: env steps per collection (default: one batched step off-policy, 2048
            on-policy). update_per_step: off-policy gradient steps per collected env step.
        repeat: on-policy passes over each collection. test_episodes: per test (default 4×envs).
        num_threads: ``torch.set_num_threads`` (1 is 5-10× faster for small nets, SPEC §5).
        resume: continue from ``run_dir/train_state.pt`` (e.g. after a kill -9). It restores
            the networks, optimizers, replay buffer, RNG states, the trainer's epoch/step
            counters and the best test score. Episodes that were running are not restored:
            the train envs restart with seed ``seed + 7919 * epoch``, so a run resumed from
            the same state is reproducible, though not bit-equal to an uninterrupted one.
        epoch_hook: called as ``epoch_hook(algorithm, epoch)`` after every epoch (e.g. figures).
    Returns:
        ``best_reward``, ``best_reward_std``, ``env_steps`` (including warm-up),
        ``update_rounds`` (collect-then-update rounds), ``test_episodes``, ``epochs`` and
        ``resumed_from_epoch`` (None for a fresh run).
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = load_train_state(run_dir) if resume else None
    seed_everything(seed)
    train_envs.seed(seed)
    off_policy = isinstance(algorithm, OffPolicyAlgorithm)
    n_envs = len(train_envs)
    # whole batched steps: the Collector would overshoot a non-multiple anyway (and warn)
    warmup = math.ceil(warmup_steps / n_envs) * n_envs if off_policy else 0
    collect = collect_steps or (n_envs if off_policy else 2048)
    budget = total_steps - warmup
    if budget < collect or epochs < 1:
        raise ValueError(f"total_steps={total_steps} leaves {budget} steps after warm-up for "
                         f"{epochs} epochs: expected at least one collection of {collect} steps")
    buffer = buffer_size if off_policy else collect + n_envs
    train_collector, test_collector = _collectors(algorithm, train_envs, test_envs, buffer)
    best = {"score": -math.inf, "std": 0.0}
    done = dict(zip(("epoch", "env_step"), (0, 0) if state is None else state["counters"][:2]))
    last_test = {"score": -math.inf, "std": 0.0}
    if state is None:
        train_collector.reset()
        if warmup > 0:
            train_collector.collect(n_step=warmup, random=True)
    else:
        algorithm.load_state_dict(state["algorithm"])
        train_collector.buffer = state["buffer"]
        best.update(state["best"])
        train_envs.seed(seed + 7919 * state["counters"][0])
        train_collector.reset(reset_buffer=False)
        _set_rng_state(state["rng"])
        log.warning("resuming %s at epoch %d / %d (%d env steps after warm-up, best test reward %.3f)",
                    run_dir, state["counters"][0], epochs, state["counters"][1], best["score"])
    writer = SummaryWriter(log_dir=str(run_dir))

    def test_fn(epoch: int, env_step: int | None) -> None:
        # same test episodes at every test step, so "best" compares policies, not luck
        test_envs.seed(seed + 1_000_003)
        test_collector.reset_env()

    def score_fn(stats: CollectStats) -> float:
        last_test.update(score=float(stats.returns_stat.mean), std=float(stats.returns_stat.std))
        return last_test["score"]

    def save_best_fn(algo: Algorithm) -> None:
        # the trainer forgets its best score on resume; we keep it in the training state
        if last_test["score"] > best["score"]:
            best.update(last_test)
            save_policy(algo, run_dir / POLICY_FILE)

    def save_state_fn(epoch: int, env_step: int, gradient_step: int) -> str:
        path, done["epoch"], done["env_step"] = run_dir / TRAIN_STATE_FILE, epoch, env_step
        if epoch_hook is not None:
            epoch_hook(algorithm, epoch)
        atomic_torch_save({"format": _STATE_FORMAT, "algorithm": algorithm.state_dict(),
                           "buffer": train_collector.buffer, "best": dict(best), "rng": _rng_state(),
                           "counters": (epoch, env_step, gradient_step), "warmup": warmup}, path)
        return str(path)

    common = {
        "training_collector": train_collector, "test_collector": test_collector,
        "max_epochs": epochs, "epoch_num_steps": math.ceil(budget / epochs),
        "collection_step_num_env_steps": collect, "batch_size": batch_size,
        "test_step_num_episodes": test_episodes or 4 * len(test_envs),
        "save_best_fn": save_best_fn, "compute_score_fn": score_fn,
        "save_checkpoint_fn": save_state_fn, "resume_from_log": state is not None,
        "test_fn": test_fn, "verbose": False, "show_progress": show_progress,
        "logger": _ResumableLogger(writer, None if state is None else tuple(state["counters"])),
    }
    params = (OffPolicyTrainerParams(update_step_num_gradient_steps_per_sample=update_per_step,
                                     **common) if off_policy
              else OnPolicyTrainerParams(update_step_num_repetitions=repeat, **common))
    try:
        with _quiet_tqdm(not show_progress):
            stats = algorithm.run_training(params)
    finally:
        writer.close()
    env_steps = done["env_step"] + (state["warmup"] if state is not None else warmup)
    log.info("trained %s for %d env steps: best test reward %.3f ± %.3f; policy in %s",
             type(algorithm).__name__, env_steps, best["score"], best["std"], run_dir / POLICY_FILE)
    return {"best_reward": best["score"], "best_reward_std": best["std"], "env_steps": env_steps,
            "update_rounds": int(stats.update_step), "test_episodes": int(stats.test_episode),
            "epochs": done["epoch"], "resumed_from_epoch": None if state is None else state["counters"][0]}
