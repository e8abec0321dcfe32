"""Experiment C's agents: π and the learned transformer T, both trained by REINFORCE, as one Tianshou algorithm.

Each step π(x_t, x_g, t/T) draws a Gaussian action a in the autoencoder's code space and T(x_t, a)
draws the next image x_{t+1} ~ N(μ_T(x_t, a), σ_T² I), which is the env's action (784 pixels, the
env clips it to [0, 1]). Both follow the gradient of the same return,
``E[(G_t − V(s_t)) · ∇(log π(a_t) + log T(x_{t+1}))]``, with a learned baseline V and normalised
advantages; π's action a is stored beside the env action (Tianshou keeps a policy's ``policy``
entry in the buffer), so the update re-scores both log-probabilities. Sampled images are detached:
no gradient crosses from one step to the next through T (the BPTT baseline,
:mod:`lightning_modules.transform_rnn`, does exactly that). One update per collection, on all of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import Algorithm
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm, Policy, TrainingStats
from tianshou.data import Batch, ReplayBuffer, to_torch
from torch import nn
from torch.distributions import Independent, Normal

from lightning_modules.checkpoints import load_module
from lightning_modules.nets.transform import (
    PolicyNet,
    TransformNet,
    ValueNet,
    init_from_autoencoder,
    split_obs,
    unroll,
)
from rl.agents.base import AgentSpec
from utils.errors import UserError


@dataclass
class TransformPGParams:
    """π, T and the baseline V (experiment C's RL path)."""

    code_dim: int = 32
    """Width of π's action a = the AE's code size."""
    action_bound: float = 2.0
    """π's mean is tanh-bounded to [-b, b]^code_dim."""
    code_scale: float = 10.0
    """T moves the code of x_t by ``code_scale · a`` (≈ the std of an AE code entry)."""
    init_autoencoder: Optional[str] = None
    """AE checkpoint/run folder whose encoder/decoder π and T start from (None: random init)."""
    width: int = 16
    """Conv width of V."""
    hidden: int = 128
    """MLP size of π and V."""
    init_log_std: float = -0.5
    """π's initial log std."""
    init_pixel_log_std: float = -3.0
    """T's pixel noise (a learned scalar) starts here ..."""
    min_pixel_log_std: float = -5.0
    """... and never falls below this."""
    lr_policy: float = 3e-4
    lr_transformer: float = 1e-4
    """T's gradient estimate is a 784-d Gaussian score: noisier, smaller steps."""
    lr_value: float = 1e-3
    gamma: float = 1.0
    ent_coef: float = 0.0
    """Entropy bonus on π."""
    max_grad_norm: float = 1.0
    """Gradient clipping, per net."""
    normalize_advantages: bool = True

    def __post_init__(self):
        for name in ("code_dim", "width", "hidden"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise UserError(f"agent.{name}={value} invalid: expected an int >= 1")
        for name in ("action_bound", "code_scale", "lr_policy", "lr_transformer", "lr_value", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"agent.{name}={value} invalid: expected a finite number > 0")
        if not 0.0 <= self.gamma <= 1.0 or not self.ent_coef >= 0:
            raise UserError(f"agent.gamma={self.gamma} / agent.ent_coef={self.ent_coef} invalid: expected gamma "
                            "in [0, 1], ent_coef >= 0")
        if not self.min_pixel_log_std <= self.init_pixel_log_std <= 0.0:
            raise UserError(f"agent.init_pixel_log_std={self.init_pixel_log_std} invalid: expected "
                            f"min_pixel_log_std ({self.min_pixel_log_std}) <= it <= 0")


class TransformPolicy(Policy):
    """π then T: observations ``[x_t, x_g, t/T]`` -> the next image (sampled while training, the means
    in evaluation); ``policy.pi_action`` of its output is π's action a."""

    def __init__(self, p: TransformPGParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box):
        super().__init__(action_space=act_space, observation_space=obs_space, action_scaling=False,
                         action_bound_method=None)
        self.pi = PolicyNet(p.code_dim, p.hidden, p.action_bound, p.code_scale, p.init_log_std)
        self.transformer = TransformNet(p.code_dim, p.code_scale, p.init_pixel_log_std)
        self.min_pixel_log_std = p.min_pixel_log_std

    def _dists(self, obs_NO: torch.Tensor, action_NA: Optional[torch.Tensor] = None):
        x, goal, t_frac = split_obs(obs_NO)
        pi = Independent(Normal(self.pi(x, goal, t_frac), self.pi.log_std.exp()), 1)
        deterministic = not self.is_within_training_step
        a = (pi.mean if deterministic else pi.sample()) if action_NA is None else action_NA
        pixel_std = self.transformer.log_std.clamp(min=self.min_pixel_log_std, max=0.0).exp()
        return pi, a, Independent(Normal(self.transformer(x, a), pixel_std), 3)

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        obs = torch.as_tensor(batch.obs, dtype=torch.float32, device=self.transformer.log_std.device)
        _, a, tr = self._dists(obs)
        image = tr.mean if not self.is_within_training_step else tr.sample()
        return Batch(act=image.flatten(1), state=state, policy=Batch(pi_action=a))

    def log_prob(self, obs_NO: torch.Tensor, action_NA: torch.Tensor, image_NP: torch.Tensor):
        """(log π(a) + log T(image), π's entropy), both N, differentiable in π's and T's parameters."""
        pi, a, tr = self._dists(obs_NO, action_NA)
        return pi.log_prob(a) + tr.log_prob(image_NP.view(len(image_NP), 1, 28, 28)), pi.entropy()

    @torch.no_grad()
    def generate(self, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, steps: int) -> torch.Tensor:
        """Deterministic trajectories T×N×1×28×28 (means of π and T) for evaluation, run on the policy's
        device and returned on ``source_N1HW``'s."""
        dev = self.transformer.log_std.device
        traj = unroll(self.pi, self.transformer, source_N1HW.to(dev), goal_N1HW.to(dev), steps).clamp(0.0, 1.0)
        return traj.to(source_N1HW.device)


_ADAM_KEY = "transform_pg_adams"


@dataclass(kw_only=True)
class TransformPGStats(TrainingStats):
    loss: float
    pg: float
    value: float
    entropy: float
    pixel_std: float
    action_std: float


class TransformPG(OnPolicyAlgorithm[TransformPolicy]):
    """REINFORCE with a learned baseline V for π and T (three Adam optimisers: π, T, V)."""

    def __init__(self, *, policy: TransformPolicy, params: TransformPGParams):
        super().__init__(policy=policy)
        self.params = params
        self.value = ValueNet(params.width, params.hidden)
        # one loss, three nets with their own learning rates and clipping: plain Adams, saved by state_dict
        self._adams = [torch.optim.Adam(net.parameters(), lr=lr) for net, lr in (
            (policy.pi, params.lr_policy), (policy.transformer, params.lr_transformer), (self.value, params.lr_value))]

    def _preprocess_batch(self, batch: Batch, buffer: ReplayBuffer, indices: np.ndarray) -> Batch:
        returns, _ = Algorithm.compute_episodic_return(batch, buffer, indices, v_s_=np.zeros(len(indices)),
                                                       gamma=self.params.gamma, gae_lambda=1.0)
        batch.returns = returns
        return batch

    def _update_with_batch(self, batch: Batch, batch_size: Optional[int], repeat: int) -> TransformPGStats:
        p, device = self.params, self.policy.transformer.log_std.device
        obs = to_torch(batch.obs, torch.float32, device)
        returns = to_torch(batch.returns, torch.float32, device)
        log_prob, entropy = self.policy.log_prob(obs, to_torch(batch.policy.pi_action, torch.float32, device),
                                                 to_torch(batch.act, torch.float32, device))
        x, goal, t_frac = split_obs(obs)
        value = self.value(x, goal, t_frac)
        adv = (returns - value).detach()
        if p.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        pg = -(adv * log_prob).mean()
        value_loss = (value - returns).pow(2).mean()
        loss = pg + 0.5 * value_loss - p.ent_coef * entropy.mean()
        for opt in self._adams:
            opt.zero_grad()
        loss.backward()
        for net in (self.policy.pi, self.policy.transformer, self.value):
            nn.utils.clip_grad_norm_(net.parameters(), p.max_grad_norm)
        for opt in self._adams:
            opt.step()
        return TransformPGStats(loss=loss.item(), pg=pg.item(), value=value_loss.item(), entropy=entropy.mean().item(),
                                pixel_std=float(self.policy.transformer.log_std.detach().exp()),
                                action_std=float(self.policy.pi.log_std.detach().exp().mean()))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:
        out = super().state_dict(*args, **kwargs)
        out[_ADAM_KEY] = [opt.state_dict() for opt in self._adams]
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        state_dict = dict(state_dict)
        for opt, saved in zip(self._adams, state_dict.pop(_ADAM_KEY)):
            opt.load_state_dict(saved)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def build(p: TransformPGParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> TransformPG:
    return TransformPG(policy=TransformPolicy(p, obs_space, act_space), params=p)


def prepare(algorithm: TransformPG, p: TransformPGParams) -> None:
    if p.init_autoencoder:
        init_from_autoencoder(algorithm.policy.pi, algorithm.policy.transformer,
                              load_module(p.init_autoencoder, "autoencoder"))


def act(policy: TransformPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    return policy(Batch(obs=obs_NO, info={})).act


AGENT = AgentSpec(params=TransformPGParams, build=build, act=act, off_policy=False, prepare=prepare,
                  doc="experiment C: π and the transformer T, both agents, by REINFORCE with a learned baseline")
