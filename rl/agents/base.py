"""What every agent of the table shares: its spec, the env's spaces and the torch twin of action mapping.

Continuous policies output actions in [-1, 1] and Tianshou's ``map_action`` scales them to the env's
``[-action_bound, action_bound]`` box, so exploration noise, TD3's policy noise and the noise clip are
in those normalised units (σ 0.3 is 0.9 in z units for a bound of 3).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, List, Optional

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import Algorithm
from tianshou.algorithm.algorithm_base import Policy
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousCritic
from torch import nn

from utils.errors import UserError

ActFn = Callable[[Policy, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One entry of the agent table (:data:`rl.agents.AGENTS`).

    Attributes:
        params: dataclass of the hyper-parameters (the config's ``agent`` section, defaults stated there).
        build: ``build(params, obs_space, act_space) -> Algorithm`` (a Tianshou algorithm; seed before).
        act: ``act(policy, obs_NO) -> raw actions N×A``, deterministic (no exploration), before
            ``map_action``; :func:`rl.agents.act` bounds and scales them to the box.
        off_policy: True for replay-buffer agents (warm-up, ``update_per_step``), False for on-policy
            ones (``collect_steps``, ``repeat``).
        prepare: optional ``prepare(algorithm, params)`` run once for a fresh training run only (not when
            a saved policy is loaded), e.g. copying pretrained weights into the nets.
        doc: one line for ``--help`` and the docs.
    """

    params: type
    build: Callable[[Any, gym.spaces.Box, gym.spaces.Box], Algorithm]
    act: ActFn
    off_policy: bool
    prepare: Optional[Callable[[Algorithm, Any], None]] = None
    doc: str = ""


def spaces(obs_dim: int, act_dim: int, action_bound: float) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The observation box ``(-inf, inf)^O`` and the action box ``[-b, b]^A`` of an env."""
    if not (obs_dim >= 1 and act_dim >= 1 and math.isfinite(action_bound) and action_bound > 0):
        raise UserError(f"need obs_dim >= 1, act_dim >= 1 and a finite action_bound > 0, got "
                        f"{obs_dim}, {act_dim}, {action_bound}")
    obs = gym.spaces.Box(-np.inf, np.inf, (int(obs_dim),), np.float32)
    act = gym.spaces.Box(-action_bound, action_bound, (int(act_dim),), np.float32)
    return obs, act


def map_action(policy: Policy, act_NA: torch.Tensor) -> torch.Tensor:
    """Torch twin of ``Policy.map_action`` (which returns numpy): bound, then scale to the box."""
    if policy.action_bound_method == "clip":
        act_NA = act_NA.clamp(-1.0, 1.0)
    elif policy.action_bound_method == "tanh":
        act_NA = torch.tanh(act_NA)
    if policy.action_scaling:
        low = torch.as_tensor(policy.action_space.low, device=act_NA.device)
        high = torch.as_tensor(policy.action_space.high, device=act_NA.device)
        act_NA = low + (high - low) * (act_NA + 1.0) / 2.0
    return act_NA


def per_entry(name: str, value: Any, act_dim: int) -> torch.Tensor:
    """``value`` for every action entry: one finite number, or ``act_dim`` of them (one per entry)."""
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if len(t) == 1:
        t = t.expand(act_dim)
    if len(t) != act_dim or not torch.isfinite(t).all():
        raise UserError(f"{name} must be a finite number or {act_dim} of them (one per action entry), "
                        f"got {len(t)} value(s)")
    return t


def start_head(head: nn.Module, value_A: torch.Tensor, shrink: float = 0.0) -> None:
    """Make ``head`` (a net whose last layer is linear) output ``value_A`` in every state: the last layer's
    bias is set to the value and its weights are scaled by ``shrink`` (0: exactly the value; PPO keeps
    0.01, a little state dependence, which its bounded tanh features allow)."""
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(shrink)
        last.bias.copy_(value_A)


def start_mean(head: nn.Module, act_space: gym.spaces.Box, init_mean: Any, shrink: float = 0.0) -> None:
    """A warm start: the tanh-bounded mean of ``head`` starts at ``init_mean`` (box units, one number or one
    per entry) in every state, its pre-tanh output at ``atanh(init_mean / bound)`` (``shrink``: as
    :func:`start_head`)."""
    act_dim, bound = act_space.shape[0], float(act_space.high[0])
    mean = per_entry("init_mean", init_mean, act_dim) / bound
    if mean.abs().max() >= 1.0:
        raise UserError(f"init_mean must lie strictly inside the action box (-{bound:g}, {bound:g}), "
                        f"got an entry of {mean.abs().max().item() * bound:g}")
    start_head(head, torch.atanh(mean), shrink)


def hidden_sizes(value: Any) -> list[int]:
    """``hidden_sizes`` as a list of ints >= 1 (a config may give a tuple)."""
    sizes = [int(h) for h in value]
    if not sizes or min(sizes) < 1:
        raise UserError(f"agent.hidden_sizes={list(value)} invalid: expected a non-empty list of ints >= 1")
    return sizes


@dataclasses.dataclass
class ActorCriticParams:
    """What the off-policy actor-critics (TD3, SAC) share."""

    hidden_sizes: List[int] = dataclasses.field(default_factory=lambda: [256, 256])
    """Hidden layers of the actor and of each critic."""
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    """Soft target update rate."""
    n_step: int = 1
    """Steps of the bootstrapped return."""


def q_critic(obs_space: gym.spaces.Box, act_space: gym.spaces.Box, sizes: list[int]) -> ContinuousCritic:
    """An MLP Q(s, a) on the concatenated observation and action."""
    return ContinuousCritic(preprocess_net=Net(state_shape=obs_space.shape[0], action_shape=act_space.shape[0],
                                               hidden_sizes=sizes, concat=True))
