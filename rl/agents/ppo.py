"""PPO (Tianshou) with a tanh-bounded Gaussian mean and an optional warm start of that Gaussian."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional

import gymnasium as gym
import torch
from tianshou.algorithm import PPO
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
from torch import nn
from torch.distributions import Independent, Normal

from rl.agents.base import AgentSpec, hidden_sizes, per_entry, start_mean


@dataclass
class PPOParams:
    """PPO hyper-parameters. With ``action_bound_method='clip'`` PPO drifted when it started wide:
    the mean is tanh-bounded and the log std starts at -1."""

    hidden_sizes: List[int] = field(default_factory=lambda: [256, 256])
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    eps_clip: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    init_log_std: Any = -1.0
    """Initial log std: one number, or one per action entry."""
    value_clip: bool = False
    advantage_normalization: bool = True
    init_mean: Optional[Any] = None
    """Warm start: the mean action in every state at the start, in box units (one number or one per
    entry); None keeps Tianshou's initialisation."""


def gaussian_dist(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    """Diagonal Gaussian over the action vector (module level so policies stay picklable)."""
    loc, scale = loc_scale
    return Independent(Normal(loc, scale), 1)


def init_gaussian(actor: ContinuousActorProbabilistic, act_space: gym.spaces.Box, init_mean: Any,
                  init_log_std: Any) -> None:
    """Log std per action entry; with ``init_mean`` (box units) the tanh-bounded mean starts there in
    every state (:func:`rl.agents.base.start_mean`)."""
    with torch.no_grad():
        actor.sigma_param.copy_(per_entry("init_log_std", init_log_std, act_space.shape[0]).view_as(actor.sigma_param))
    if init_mean is not None:
        start_mean(actor.mu, act_space, init_mean, shrink=0.01)


def build(p: PPOParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> PPO:
    obs_dim, act_dim, hs = obs_space.shape[0], act_space.shape[0], hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hs, activation=nn.Tanh),
        action_shape=act_dim, max_action=1.0, unbounded=False)
    init_gaussian(actor, act_space, p.init_mean, p.init_log_std)
    critic = ContinuousCritic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hs, activation=nn.Tanh))
    with warnings.catch_warnings():
        # Tianshou warns about a bounded mean plus action scaling; that combination is intended here
        warnings.filterwarnings("ignore", message="action_scaling and action_bound_method")
        policy = ProbabilisticActorPolicy(
            actor=actor, dist_fn=gaussian_dist, deterministic_eval=True, action_space=act_space,
            observation_space=obs_space, action_scaling=True, action_bound_method="clip")
    return PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=p.lr),
               eps_clip=p.eps_clip, value_clip=p.value_clip,
               advantage_normalization=p.advantage_normalization, vf_coef=p.vf_coef,
               ent_coef=p.ent_coef, max_grad_norm=p.max_grad_norm,
               gae_lambda=p.gae_lambda, gamma=p.gamma)


def act(policy: ProbabilisticActorPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    return policy.dist_fn(policy.actor(obs_NO)[0]).mode


AGENT = AgentSpec(params=PPOParams, build=build, act=act, off_policy=False,
                  doc="PPO: clipped policy gradient with GAE (on-policy); a Gaussian that can start at a chosen mean")
