"""TD3 (Tianshou): experiment B's agent, with the reference hyper-parameters; options for one-step episodes
(not from the paper) in :mod:`rl.agents.td3_bandit`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Literal, Optional

import gymnasium as gym
import torch
from tianshou.algorithm import TD3
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.exploration import GaussianNoise
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorDeterministic

from rl.agents.base import ActorCriticParams, AgentSpec, hidden_sizes, q_critic
from utils.errors import UserError


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
    critic: Literal["twin", "per_target"] = "twin"
    """'twin': TD3's two Q(s, a) critics (the paper's); 'per_target' (not from the paper; one-step episodes):
    critics on z alone with one head per target digit, all heads fitted to the env's every-target rewards
    (rl/agents/td3_bandit.py; needs ``env.all_rewards=true``)."""
    relabel: bool = False
    """Not from the paper: every stored transition counts for every task of the set, with that task's exact
    reward (needs ``env.all_rewards=true``)."""
    imitate: float = 0.0
    """Not from the paper (with ``critic=per_target``): weight of the pull towards the batch's best-rewarded
    action for the row's target digit, for rows the critic values more than ``imitate_margin`` below it."""
    imitate_margin: float = 1.0
    """Not from the paper: reward gap (reward units) above which ``imitate`` pulls a row."""
    actor_q: Literal["first", "min", "mean"] = "first"
    """The actor's objective: the first critic (TD3, the paper's), or (not from the paper) the min or mean
    of the twins."""
    task_encodings: Optional[List[List[float]]] = None
    """Set by the env builder when the options above need it (T×E task encodings); leave unset."""
    task_targets: Optional[List[List[int]]] = None
    """Set by the env builder when the options above need it (10×T targets per label and task); leave unset."""

    def bandit(self) -> bool:
        """Whether any option asks for the one-step-episode variant (:class:`rl.agents.td3_bandit.BanditTD3`)."""
        return self.relabel or self.critic != "twin" or self.actor_q != "first" or self.imitate != 0


def _check_bandit(p: TD3Params) -> None:
    if p.imitate < 0 or (p.imitate > 0 and p.critic != "per_target"):
        raise UserError(f"agent.imitate={p.imitate} invalid: expected >= 0, and > 0 only with agent.critic=per_target")
    if p.task_encodings is None or p.task_targets is None:
        raise UserError("agent.relabel / critic=per_target / actor_q / imitate need the env's task tables: only the "
                        "mnist_task env with env.all_rewards=true supplies them")


def build(p: TD3Params, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> TD3:
    hs = hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=obs_space.shape[0], hidden_sizes=hs), action_shape=act_space.shape[0],
        max_action=1.0)  # tanh output in [-1, 1]; map_action scales it to the box

    noise = GaussianNoise(sigma=p.exploration_noise) if p.exploration_noise > 0 else None
    policy = ContinuousDeterministicPolicy(
        actor=actor, exploration_noise=noise, action_space=act_space,
        observation_space=obs_space, action_scaling=True, action_bound_method="clip")
    if p.bandit():
        _check_bandit(p)
    if p.critic == "per_target":
        from rl.agents.td3_bandit import PerTargetCritic
        critics = [PerTargetCritic(act_space.shape[0], hs) for _ in range(2)]
    else:
        critics = [q_critic(obs_space, act_space, hs) for _ in range(2)]
    kwargs = dict(policy=policy, policy_optim=AdamOptimizerFactory(lr=p.actor_lr),
                  critic=critics[0], critic_optim=AdamOptimizerFactory(lr=p.critic_lr),
                  critic2=critics[1], critic2_optim=AdamOptimizerFactory(lr=p.critic_lr),
                  tau=p.tau, gamma=p.gamma, policy_noise=p.policy_noise,
                  update_actor_freq=p.update_actor_freq, noise_clip=p.noise_clip,
                  n_step_return_horizon=p.n_step)
    if not p.bandit():
        return TD3(**kwargs)
    from rl.agents.td3_bandit import BanditTD3
    return BanditTD3(task_encodings=p.task_encodings, task_targets=p.task_targets, relabel=p.relabel,
                     per_target=p.critic == "per_target", actor_q=p.actor_q, imitate=p.imitate,
                     imitate_margin=p.imitate_margin, **kwargs)


def act(policy: ContinuousDeterministicPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    return policy.actor(obs_NO)[0]


AGENT = AgentSpec(params=TD3Params, build=build, act=act, off_policy=True,
                  doc="TD3: deterministic actor, twin critics, delayed policy updates (off-policy)")
