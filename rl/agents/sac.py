"""SAC (Tianshou): a squashed Gaussian actor with twin critics and an entropy bonus (optionally tuned)."""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from tianshou.algorithm import SAC
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic

from rl.agents.base import ActorCriticParams, AgentSpec, hidden_sizes, q_critic


@dataclass
class SACParams(ActorCriticParams):
    """SAC hyper-parameters (Tianshou's MuJoCo example defaults)."""

    alpha: float = 0.2
    """Entropy weight (the initial one when ``auto_alpha``)."""
    auto_alpha: bool = False
    """Tune alpha towards a target entropy of -A."""
    alpha_lr: float = 3e-4


def build(p: SACParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> SAC:
    act_dim, hs = act_space.shape[0], hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorProbabilistic(preprocess_net=Net(state_shape=obs_space.shape[0], hidden_sizes=hs),
                                         action_shape=act_dim, unbounded=True, conditioned_sigma=True)

    alpha = (AutoAlpha(-float(act_dim), float(torch.tensor(p.alpha).log()), AdamOptimizerFactory(lr=p.alpha_lr))
             if p.auto_alpha else float(p.alpha))
    policy = SACPolicy(actor=actor, action_space=act_space, observation_space=obs_space)
    return SAC(policy=policy, policy_optim=AdamOptimizerFactory(lr=p.actor_lr),
               critic=q_critic(obs_space, act_space, hs), critic_optim=AdamOptimizerFactory(lr=p.critic_lr),
               critic2=q_critic(obs_space, act_space, hs), critic2_optim=AdamOptimizerFactory(lr=p.critic_lr),
               tau=p.tau, gamma=p.gamma, alpha=alpha, n_step_return_horizon=p.n_step)


def act(policy: SACPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    (loc, _), _ = policy.actor(obs_NO)
    return torch.tanh(loc)  # the squashed mode; map_action scales it to the box


AGENT = AgentSpec(params=SACParams, build=build, act=act, off_policy=True,
                  doc="SAC: squashed Gaussian actor, twin critics, entropy bonus (off-policy)")
