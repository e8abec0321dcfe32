"""Experiment C environment core: walk from a source digit x_s to a goal digit x_g in T steps.

State = (x_t, x_g); observation ``[x_t (784), x_g (784), t/T]`` in [0, 1]. The action is the
next image x_{t+1} (784 pixels, clipped to [0, 1]): the learned transformer T that proposes it is
an *agent*, not part of the environment, so policy gradients can train both π (whose Gaussian
action a feeds T) and T (whose Gaussian output is this action) on the same rewards
(:mod:`rl.transform_pg`). Rewards: :meth:`evaluation.transform.TransformObjective.step_reward`
(discriminator realism of each new image; distance to the goal at the last step; optional
per-step and max-step penalties; optional early end within ``goal_tolerance``).

Like :class:`rl.envs.mnist_task.MnistTaskCore`, the core holds N episodes on one device and runs
the discriminator (and the encoder for AE distances) once per batched step; row i draws
its episodes from the counter-based stream of seed ``seed + i`` (:func:`rl.envs.views.row_randint`).
"""
from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch

from datamodules.mnist_pairs import RAND_HIGH, GoalSampler
from evaluation.transform import TransformObjective
from lightning_modules.nets.transform import PIXELS
from rl.envs.core import RowStreams, check_action, mask_rows, row_randint
from utils.errors import UserError

_STREAM_SOURCE, _STREAM_GOAL_A, _STREAM_GOAL_B = 0, 1, 2


class TransformCore(RowStreams):
    """N episodes of digit-to-digit transformation, batched on one device.

    Args:
        images_N1HW: the digit pool (float in [0, 1]) sources and goals are drawn from.
        labels_N: their int labels.
        objective: frozen discriminator/encoder + reward weights (its ``steps`` = T).
        goal_class: ``same`` / ``other`` / ``any`` (:class:`datamodules.mnist_pairs.GoalSampler`).
        num_envs: N. seed: int (row i gets ``seed + i``) or one seed per row.
    """

    def __init__(self, images_N1HW: torch.Tensor, labels_N: torch.Tensor, objective: TransformObjective,
                 goal_class: str = "other", num_envs: int = 1, seed: int | Sequence[int] = 0):
        if images_N1HW.dim() != 4 or images_N1HW.shape[1:] != (1, 28, 28) or len(images_N1HW) == 0:
            raise UserError(f"images must be a non-empty N×1×28×28 tensor, got {tuple(images_N1HW.shape)}")
        if labels_N.shape != images_N1HW.shape[:1]:
            raise UserError(f"labels must be {len(images_N1HW)} ints (one per image), got {tuple(labels_N.shape)}")
        if int(num_envs) != num_envs or num_envs < 1:
            raise UserError(f"num_envs={num_envs} invalid: expected an int >= 1")
        self.images, self.labels_N = images_N1HW.float(), labels_N.long()
        self.objective, self.goal_class = objective, goal_class
        self.sampler = GoalSampler(self.labels_N.cpu(), goal_class)  # its tables are built on the host
        self.num_envs, self.steps, self.action_bound = int(num_envs), objective.steps, 1.0
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, (PIXELS,), np.float32)
        n, dev = self.num_envs, self.device
        self.x_N1HW = torch.zeros(n, 1, 28, 28, device=dev)
        self.source_idx_N = torch.zeros(n, dtype=torch.long, device=dev)
        self.goal_idx_N = torch.zeros(n, dtype=torch.long, device=dev)
        self.t_N = torch.zeros(n, dtype=torch.long, device=dev)
        self._init_streams(seed)

    def spawn(self, num_envs: int, seed: int | Sequence[int]) -> TransformCore:
        """A new core over the same pool, objective and goal rule (e.g. test envs)."""
        return TransformCore(self.images, self.labels_N, self.objective, self.goal_class, num_envs, seed)

    def to(self, device: torch.device | str) -> TransformCore:
        """This core with its pool and objective (discriminator, encoder) on ``device`` (itself when they
        are there already; the objective moves in place); the rows' streams restart from their seeds."""
        device = torch.device(device)
        if device == self.device:
            return self
        return TransformCore(self.images.to(device), self.labels_N.to(device), self.objective.to(device),
                             self.goal_class, self.num_envs, self._seeds.tolist())

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def obs_dim(self) -> int:
        return 2 * PIXELS + 1

    @property
    def act_dim(self) -> int:
        return PIXELS

    @property
    def goals(self) -> torch.Tensor:
        """N×1×28×28 goal images of the current episodes."""
        return self.images[self.goal_idx_N]

    def observe(self, ids_R: torch.Tensor | None = None) -> torch.Tensor:
        """Observations R×(2·784 + 1) ``[x_t, x_g, t/T]`` of rows ``ids`` (all when None)."""
        ids = torch.arange(self.num_envs, device=self.device) if ids_R is None else ids_R
        t_frac = (self.t_N[ids].float() / self.steps)[:, None]
        return torch.cat([self.x_N1HW[ids].flatten(1), self.images[self.goal_idx_N[ids]].flatten(1), t_frac], dim=1)

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        """New episodes in the masked rows (all when None): a source digit and a goal per the
        goal rule, from each row's own stream. Returns N×O observations of all rows."""
        rows = mask_rows(mask_N, self.num_envs, self.device)
        seeds, counters = self._seeds[rows], self._counters[rows]
        src = row_randint(seeds, counters, _STREAM_SOURCE, len(self.images))
        rand_a = row_randint(seeds, counters, _STREAM_GOAL_A, RAND_HIGH)
        rand_b = row_randint(seeds, counters, _STREAM_GOAL_B, RAND_HIGH)
        self.source_idx_N[rows], self.goal_idx_N[rows] = src, self.sampler.sample(self.labels_N[src], rand_a, rand_b)
        self.x_N1HW[rows] = self.images[src]
        self.t_N[rows] = 0
        self._counters[rows] += 1
        self._needs_reset[rows] = False
        return self.observe()

    def step(self, action_RP: torch.Tensor, ids_R: torch.Tensor | None = None):
        """Set the next image of rows ``ids`` (all when None) to ``action`` (R×784, clipped to [0, 1]).

        Returns ``(obs_RO, reward_R, terminated_R, truncated_R, info)``; an episode terminates at
        step T or when its goal is reached; info holds R-tensors ``realism`` (p(real)),
        ``distance``, ``reached`` and ``step``.
        """
        ids = torch.arange(self.num_envs, device=self.device) if ids_R is None else ids_R.long()
        if self._needs_reset[ids].any():
            raise RuntimeError(f"rows {ids[self._needs_reset[ids]].tolist()} stepped before reset: call reset(mask) first")
        # detached copy: whatever produced the action, no gradient crosses into the next step
        image = check_action(action_RP, len(ids), PIXELS, 1.0, self.device, "pixels").detach().clamp_min(0.0)
        image = image.view(len(ids), 1, 28, 28)
        step = self.t_N[ids] + 1
        with torch.inference_mode():
            logit = self.objective.realism_logit(image)
            dist = self.objective.distance(image, self.images[self.goal_idx_N[ids]])
        logit, dist = logit.clone(), dist.clone()  # ordinary tensors for callers
        reward, reached, last = self.objective.step_reward(logit, dist, step)
        self.x_N1HW[ids], self.t_N[ids] = image, step
        self._needs_reset[ids] = last
        info = {"realism": torch.sigmoid(logit), "distance": dist, "reached": reached, "step": step}
        return self.observe(ids), reward, last, torch.zeros_like(last), info
