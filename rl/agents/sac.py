"""SAC (Tianshou): a squashed Gaussian actor with twin critics and an entropy bonus (optionally tuned),
and optionally a warm start of that Gaussian (as PPO's)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import torch
from tianshou.algorithm import SAC
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy, SACTrainingStats
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic

from rl.agents.base import ActorCriticParams, AgentSpec, hidden_sizes, per_entry, q_critic, start_head, start_mean
from utils.errors import UserError


@dataclass
class SACParams(ActorCriticParams):
    """SAC hyper-parameters (Tianshou's MuJoCo example defaults)."""

    alpha: float = 0.2
    """Entropy weight (the initial one when ``auto_alpha``)."""
    auto_alpha: bool = False
    """Tune alpha towards ``target_entropy``."""
    alpha_lr: float = 3e-4
    target_entropy: Optional[float] = None
    """The entropy ``auto_alpha`` tunes towards; None: -A, SAC's choice. A warm start with log std s in every
    entry has an entropy near A·(s + 1.42) before the squashing, far below -A for s = -3 (-161 against -102
    for A = 102), so alpha would rise and add noise to the start; a target near the start's keeps it. Only
    with ``auto_alpha``. Not from SAC's paper."""
    init_mean: Optional[Any] = None
    """Warm start: the squashed mean action in every state at the start, in box units (one number or one
    per entry); None keeps Tianshou's initialisation. Not from SAC's paper."""
    init_log_std: Optional[Any] = None
    """The actor's log std in every state at the start (one number or one per entry); None keeps
    Tianshou's initialisation (a state-dependent head)."""
    actor_delay: int = 0
    """Gradient steps at the start that update only the critics (and their targets), so a warm-started actor
    is not pushed around by a critic that has not learnt yet; 0: SAC as published. Not from SAC's paper."""

    def __post_init__(self):  # bad values fail when the config is read, before an env is built
        if self.actor_delay < 0:
            raise UserError(f"agent.actor_delay={self.actor_delay} invalid: expected gradient steps >= 0")
        if self.target_entropy is not None and not self.auto_alpha:
            raise UserError(f"agent.target_entropy={self.target_entropy} is read only with agent.auto_alpha=true")


class CriticFirstSAC(SAC):
    """SAC whose first ``actor_delay`` gradient steps train the critics alone (the actor and alpha wait).
    The count is a private int, so it is saved with a training state and a resumed run keeps it."""

    def __init__(self, *args: Any, actor_delay: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_delay = actor_delay
        self._critic_only_updates = 0

    def _update_with_batch(self, batch):  # type: ignore[override]
        if self._critic_only_updates >= self.actor_delay:
            return super()._update_with_batch(batch)
        self._critic_only_updates += 1
        td1, critic1_loss = self._minimize_critic_squared_loss(batch, self.critic, self.critic_optim)
        td2, critic2_loss = self._minimize_critic_squared_loss(batch, self.critic2, self.critic2_optim)
        batch.weight = (td1 + td2) / 2.0  # prio-buffer, as SAC does
        self._update_lagged_network_weights()
        return SACTrainingStats(actor_loss=0.0, critic1_loss=critic1_loss.item(),  # type: ignore[return-value]
                                critic2_loss=critic2_loss.item(), alpha=None, alpha_loss=None)


def build(p: SACParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> SAC:
    act_dim, hs = act_space.shape[0], hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorProbabilistic(preprocess_net=Net(state_shape=obs_space.shape[0], hidden_sizes=hs),
                                         action_shape=act_dim, unbounded=True, conditioned_sigma=True)
    if p.init_mean is not None:
        start_mean(actor.mu, act_space, p.init_mean)
    if p.init_log_std is not None:
        start_head(actor.sigma, per_entry("init_log_std", p.init_log_std, act_dim))

    target = -float(act_dim) if p.target_entropy is None else float(p.target_entropy)
    alpha = (AutoAlpha(target, float(torch.tensor(p.alpha).log()), AdamOptimizerFactory(lr=p.alpha_lr))
             if p.auto_alpha else float(p.alpha))
    policy = SACPolicy(actor=actor, action_space=act_space, observation_space=obs_space)
    return CriticFirstSAC(actor_delay=int(p.actor_delay), policy=policy, policy_optim=AdamOptimizerFactory(lr=p.actor_lr),
               critic=q_critic(obs_space, act_space, hs), critic_optim=AdamOptimizerFactory(lr=p.critic_lr),
               critic2=q_critic(obs_space, act_space, hs), critic2_optim=AdamOptimizerFactory(lr=p.critic_lr),
               tau=p.tau, gamma=p.gamma, alpha=alpha, n_step_return_horizon=p.n_step)


def act(policy: SACPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    (loc, _), _ = policy.actor(obs_NO)
    return torch.tanh(loc)  # the squashed mode; map_action scales it to the box


AGENT = AgentSpec(params=SACParams, build=build, act=act, off_policy=True,
                  doc="SAC: squashed Gaussian actor, twin critics, entropy bonus (off-policy); can start at a chosen mean")
