"""A complete toy experiment through latentnav's seams: a batched env core, its builder, a new agent.

Run it (from the repository root)::

    PYTHONPATH=docs/examples python -c "import reach; print(reach.main())"

What it adds, and where each piece plugs in (docs/adding-an-experiment.md walks through it):

1. ``ReachCore``: N episodes of "move a point to a target in the plane", a :class:`rl.envs.BatchedCore`
   (one batched tensor step for all rows; per-row random streams from :class:`rl.envs.RowStreams`).
2. ``reach(...)``: its builder, registered as environment ``toy_reach``; the builder's keyword
   arguments are the config's ``env`` section.
3. ``DDPGParams`` + ``build`` + ``act``: Tianshou's DDPG as one more entry of the agent table.
4. ``main()``: ``python -m rl.train``'s code path on ``reach.yaml`` (next to this file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import DDPG
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.exploration import GaussianNoise
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorDeterministic

from rl.agents import AGENTS
from rl.agents.base import ActorCriticParams, AgentSpec, hidden_sizes, q_critic
from rl.builders import ENVS
from rl.envs import RowStreams, row_randint
from rl.envs.core import check_action, mask_rows

_STREAM_X, _STREAM_Y = 0, 1


class ReachCore(RowStreams):
    """Observation ``[position (2), target (2)]``; action a step in ``[-b, b]^2``; reward minus the distance
    to the target after each step; ``steps`` steps per episode. Targets are drawn on a grid of ``grid`` points
    per axis in ``[-1, 1]`` from each row's own stream."""

    def __init__(self, num_envs: int = 1, seed: int | Sequence[int] = 0, steps: int = 5, grid: int = 21,
                 action_bound: float = 0.5):
        self.num_envs, self.steps, self.grid, self.action_bound = int(num_envs), int(steps), int(grid), float(action_bound)
        self.obs_dim, self.act_dim = 4, 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-self.action_bound, self.action_bound, (2,), np.float32)
        self.pos_N2 = torch.zeros(self.num_envs, 2)
        self.target_N2 = torch.zeros(self.num_envs, 2)
        self.t_N = torch.zeros(self.num_envs, dtype=torch.long)
        self._init_streams(seed)

    @property
    def device(self) -> torch.device:
        return self.pos_N2.device

    def spawn(self, num_envs: int, seed: int | Sequence[int]) -> ReachCore:
        return ReachCore(num_envs, seed, self.steps, self.grid, self.action_bound)

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        rows = mask_rows(mask_N, self.num_envs, self.device)
        seeds, counters = self._seeds[rows], self._counters[rows]
        cells = torch.stack([row_randint(seeds, counters, s, self.grid) for s in (_STREAM_X, _STREAM_Y)], dim=1)
        self.target_N2[rows] = cells.float() / (self.grid - 1) * 2 - 1
        self.pos_N2[rows], self.t_N[rows] = 0.0, 0
        self._counters[rows] += 1
        self._needs_reset[rows] = False
        return torch.cat([self.pos_N2, self.target_N2], dim=1)

    def step(self, action_RA: torch.Tensor, ids_R: torch.Tensor | None = None):
        ids = torch.arange(self.num_envs) if ids_R is None else ids_R.long()
        action = check_action(action_RA, len(ids), 2, self.action_bound, self.device, "(dx, dy)")
        if self._needs_reset[ids].any():
            raise RuntimeError("rows stepped before reset")
        self.pos_N2[ids] += action
        self.t_N[ids] += 1
        distance = (self.pos_N2[ids] - self.target_N2[ids]).norm(dim=1)
        done = self.t_N[ids] >= self.steps
        self._needs_reset[ids] = done
        obs = torch.cat([self.pos_N2[ids], self.target_N2[ids]], dim=1)
        return obs, -distance, done, torch.zeros_like(done), {"distance": distance}


def reach(steps: int = 5, grid: int = 21, action_bound: float = 0.5):
    """The ``toy_reach`` builder: ``make_core(num_envs, seed)``."""
    return ReachCore(1, 0, steps, grid, action_bound).spawn


@dataclass
class DDPGParams(ActorCriticParams):
    """DDPG (Tianshou): one deterministic actor, one critic (the shared actor-critic fields, smaller nets)."""

    hidden_sizes: List[int] = field(default_factory=lambda: [64, 64])
    gamma: float = 0.9
    exploration_noise: float = 0.2


def build(p: DDPGParams, obs_space: gym.spaces.Box, act_space: gym.spaces.Box) -> DDPG:
    sizes = hidden_sizes(p.hidden_sizes)
    actor = ContinuousActorDeterministic(preprocess_net=Net(state_shape=obs_space.shape[0], hidden_sizes=sizes),
                                         action_shape=act_space.shape[0], max_action=1.0)
    policy = ContinuousDeterministicPolicy(actor=actor, exploration_noise=GaussianNoise(sigma=p.exploration_noise),
                                           action_space=act_space, observation_space=obs_space,
                                           action_scaling=True, action_bound_method="clip")
    return DDPG(policy=policy, policy_optim=AdamOptimizerFactory(lr=p.actor_lr),
                critic=q_critic(obs_space, act_space, sizes), critic_optim=AdamOptimizerFactory(lr=p.critic_lr),
                tau=p.tau, gamma=p.gamma)


def act(policy: ContinuousDeterministicPolicy, obs_NO: torch.Tensor) -> torch.Tensor:
    return policy.actor(obs_NO)[0]


def register() -> None:
    """The two entries this experiment adds: an environment builder and an agent."""
    if "toy_reach" not in ENVS:
        ENVS.register("toy_reach", "reach:reach")
    AGENTS.setdefault("toy_ddpg", AgentSpec(params=DDPGParams, build=build, act=act, off_policy=True,
                                            doc="DDPG, added by docs/examples/reach.py"))


def main(overrides: Sequence[str] = ()) -> Path:
    """Train ``toy_ddpg`` on ``toy_reach`` with ``reach.yaml`` exactly as ``python -m rl.train`` would."""
    from configs import load_config
    from configs.schema import RLConfig
    from rl.train import SECTIONS, train_agent

    register()
    cfg = load_config(str(Path(__file__).with_name("reach.yaml")), list(overrides), schema=RLConfig, sections=SECTIONS)
    return train_agent(cfg)
