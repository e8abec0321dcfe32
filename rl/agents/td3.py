"""TD3 (Tianshou): experiment B's agent, with the reference hyper-parameters."""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from tianshou.algorithm import TD3
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.exploration import GaussianNoise
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorDeterministic

from rl.agents.base import ActorCriticParams, AgentSpec, hidden_sizes, q_critic


@dataclass
class TD3Params(ActorCriticParams):
    """TD3 hyper-parameters (the reference code's; exploration 0.3 beat 0.1 in a prototype)."""

    policy_noise: float = 0.2
    """Target policy smoothing noise (normalised action units)."""
    noise_clip: float = 0.5
    update_actor_freq: int = 2
    """Policy delay: one actor update per this many critic updates."""
    exploration_noise: float = 0.3
    """Gaussian exploration σ in normalised action units (0: none)."""


def build(p: TD3Params, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> TD3:
    hs = hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=obs_space.shape[0], hidden_sizes=hs), action_shape=act_space.shape[0],
        max_action=1.0)  # tanh output in [-1, 1]; map_action scales it to the box

    noise = GaussianNoise(sigma=p.exploration_noise) if p.exploration_noise > 0 else None
    policy = ContinuousDeterministicPolicy(
        actor=actor, exploration_noise=noise, action_space=act_space,
        observation_space=obs_space, action_scaling=True, action_bound_method="clip")
    return TD3(policy=policy, policy_optim=AdamOptimizerFactory(lr=p.actor_lr),
               critic=q_critic(obs_space, act_space, hs), critic_optim=AdamOptimizerFactory(lr=p.critic_lr),
               critic2=q_critic(obs_space, act_space, hs), critic2_optim=AdamOptimizerFactory(lr=p.critic_lr),
               tau=p.tau, gamma=p.gamma, policy_noise=p.policy_noise,
               update_actor_freq=p.update_actor_freq, noise_clip=p.noise_clip,
               n_step_return_horizon=p.n_step)


def act(policy: ContinuousDeterministicPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    return policy.actor(obs_NO)[0]


AGENT = AgentSpec(params=TD3Params, build=build, act=act, off_policy=True,
                  doc="TD3: deterministic actor, twin critics, delayed policy updates (off-policy)")
