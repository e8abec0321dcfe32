"""Experiment B environment core: translate an MNIST digit into ``op(label, operand) mod 10``.

One-step episodes (as in the reference code): the observation is
``[AE code of the input digit, task one-hot]``; the action is a latent ``z`` of the l-GAN; the
image is ``Dec(G(z))``; the reward is :func:`rl.envs.mnist_rewards.task_reward` (docs/experiment-b.md). The core holds N episodes
on one device and runs every network once per batched step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lightning_modules.inference import module_on
from rl.envs.core import RowStreams, check_action, mask_rows, row_randint
from rl.envs.mnist_rewards import (
    REWARD_SHAPES,
    target_probability,
    task_reward,
    task_rewards_all,
    z_prior_penalty,
)
from rl.tasks import ENCODING_DIM, NUM_CLASSES, TaskSet
from utils.errors import UserError

log = logging.getLogger(__name__)

_STREAM_DIGIT, _STREAM_TASK = 0, 1


def _check_pool(codes_ND: torch.Tensor, labels_N: torch.Tensor) -> None:
    if codes_ND.dim() != 2 or not codes_ND.dtype.is_floating_point or len(codes_ND) == 0:
        raise UserError(f"codes_ND must be a non-empty N×D float tensor, got {codes_ND.dtype} {tuple(codes_ND.shape)}")
    if labels_N.shape != codes_ND.shape[:1] or labels_N.dtype.is_floating_point:
        raise UserError(f"labels_N must be {len(codes_ND)} ints (one per code), got "
                        f"{labels_N.dtype} {tuple(labels_N.shape)}")
    if labels_N.min() < 0 or labels_N.max() >= NUM_CLASSES:
        raise UserError(f"labels must lie in 0..{NUM_CLASSES - 1}, got {int(labels_N.min())}..{int(labels_N.max())}")


def _check_number(name: str, value: float, minimum: float, strict: bool) -> float:
    value = float(value)
    ok = math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise UserError(f"{name}={value} invalid: expected a finite number {relation} {minimum}")
    return value


class MnistTaskCore(RowStreams):
    """N one-step episodes of task-driven digit translation, batched on one device.

    Args:
        codes_ND: AE codes of the source digits (the pool episodes draw from).
        labels_N: their int labels in 0..9.
        generator: frozen ``z_NK -> code_ND`` (l-GAN generator).
        decoder: frozen ``code_ND -> image N×1×28×28`` in [0, 1].
        reward_classifier: frozen ``image -> logits N×10`` used inside the reward.
        discriminator: frozen ``code_ND -> score N`` (or N×1), used for the realism hinge.
        tasks: the task set (part of the observation).
        num_envs: N. z_dim: K. action_bound: actions are clipped to ``[-b, b]^K``.
        alpha, beta, reward_shape: reward weights and shape (:func:`task_reward`).
        all_rewards: also put every target's reward (N×10) in the step info as ``rewards_all``.
        z_prior_weight, z_prior_radius: subtract :func:`z_prior_penalty` from the reward(s).
        seed: int (row i gets ``seed + i``) or one seed per row.
    The networks are put in eval mode and only ever run under ``torch.inference_mode``.
    """

    def __init__(
        self,
        codes_ND: torch.Tensor,
        labels_N: torch.Tensor,
        generator: nn.Module,
        decoder: nn.Module,
        reward_classifier: nn.Module,
        discriminator: nn.Module,
        tasks: TaskSet,
        num_envs: int = 1,
        z_dim: int = 5,
        action_bound: float = 3.0,
        alpha: float = 30.0,
        beta: float = 3.0,
        seed: int | Sequence[int] = 0,
        reward_shape: str = "prob",
        all_rewards: bool = False,
        z_prior_weight: float = 0.0,
        z_prior_radius: float = 3.9,
    ):
        if not isinstance(tasks, TaskSet):
            raise UserError(f"tasks must be a TaskSet, got {type(tasks).__name__}")
        _check_pool(codes_ND, labels_N)
        for name, value in (("num_envs", num_envs), ("z_dim", z_dim)):
            if int(value) != value or value < 1:
                raise UserError(f"{name}={value} invalid: expected an int >= 1")
        self.codes_ND, self.labels_N = codes_ND.float(), labels_N.long().to(codes_ND.device)
        # Observations carry standardised codes: raw AE codes have a scale of ~10 per unit, which
        # saturates the agents' first layers (they learned nothing at chance level without this).
        self.code_mean_D = self.codes_ND.mean(0)
        self.code_std_D = self.codes_ND.std(0).nan_to_num(1.0).clamp_min(1e-6) if len(codes_ND) > 1 \
            else torch.ones_like(self.code_mean_D)
        self.nets = {"generator": generator, "decoder": decoder,
                     "reward_classifier": reward_classifier, "discriminator": discriminator}
        for net in self.nets.values():
            net.eval()
        self.tasks, self.num_envs, self.z_dim = tasks, int(num_envs), int(z_dim)
        self.action_bound = _check_number("action_bound", action_bound, 0.0, strict=True)
        self.alpha = _check_number("alpha", alpha, 0.0, strict=False)
        self.beta = _check_number("beta", beta, 0.0, strict=False)
        if reward_shape not in REWARD_SHAPES:
            raise UserError(f"reward_shape={reward_shape!r} invalid: expected one of {list(REWARD_SHAPES)}")
        self.reward_shape, self.all_rewards = reward_shape, bool(all_rewards)
        self.z_prior_weight = _check_number("z_prior_weight", z_prior_weight, 0.0, strict=False)
        self.z_prior_radius = _check_number("z_prior_radius", z_prior_radius, 0.0, strict=False)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-self.action_bound, self.action_bound, (self.z_dim,),
                                           np.float32)
        self._probe()
        n, dev = self.num_envs, self.device
        self.digit_idx_N = torch.zeros(n, dtype=torch.int64, device=dev)
        self.task_ids_N = torch.zeros(n, dtype=torch.int64, device=dev)
        self._init_streams(seed)

    # ---- construction helpers ------------------------------------------------------------
    def _probe(self) -> None:
        # one tiny forward at construction turns shape mismatches into clear errors here
        z = torch.zeros(1, self.z_dim, device=self.device)
        with torch.inference_mode():
            code = self.nets["generator"](z)
            if tuple(code.shape) != (1, self.code_dim):
                raise UserError(f"generator maps z (1, {self.z_dim}) to {tuple(code.shape)}: "
                                f"expected (1, {self.code_dim}) to match codes_ND")
            logits = self.nets["reward_classifier"](self.nets["decoder"](code))
            if tuple(logits.shape) != (1, NUM_CLASSES):
                raise UserError(f"reward_classifier returns {tuple(logits.shape)} for one image: "
                                f"expected (1, {NUM_CLASSES}) logits")
            if self.nets["discriminator"](code).numel() != 1:
                raise UserError("discriminator must return one score per code (N or N×1)")

    def spawn(self, num_envs: int, seed: int | Sequence[int]) -> MnistTaskCore:
        """A new core over the same data, networks and reward settings (e.g. test envs)."""
        return MnistTaskCore(self.codes_ND, self.labels_N, tasks=self.tasks, num_envs=num_envs,
                             z_dim=self.z_dim, action_bound=self.action_bound, alpha=self.alpha,
                             beta=self.beta, seed=seed, reward_shape=self.reward_shape, all_rewards=self.all_rewards,
                             z_prior_weight=self.z_prior_weight, z_prior_radius=self.z_prior_radius, **self.nets)

    def to(self, device: torch.device | str) -> MnistTaskCore:
        """This core with its code pool and networks on ``device`` (itself when they are there already);
        the rows' streams restart from their seeds, as in :meth:`spawn`."""
        device = torch.device(device)
        if device == self.device:
            return self
        nets = {k: module_on(net, device) for k, net in self.nets.items()}
        return MnistTaskCore(self.codes_ND.to(device), self.labels_N.to(device), tasks=self.tasks,
                             num_envs=self.num_envs, z_dim=self.z_dim, action_bound=self.action_bound,
                             alpha=self.alpha, beta=self.beta, seed=self._seeds.tolist(),
                             reward_shape=self.reward_shape, all_rewards=self.all_rewards,
                             z_prior_weight=self.z_prior_weight, z_prior_radius=self.z_prior_radius, **nets)

    # ---- properties ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.codes_ND.device

    @property
    def code_dim(self) -> int:
        return self.codes_ND.shape[1]

    @property
    def obs_dim(self) -> int:
        return self.code_dim + ENCODING_DIM

    @property
    def act_dim(self) -> int:
        return self.z_dim

    @property
    def labels(self) -> torch.Tensor:
        """N int labels of the current input digits."""
        return self.labels_N[self.digit_idx_N]

    @property
    def targets(self) -> torch.Tensor:
        """N int targets of the current episodes."""
        return self.tasks.targets(self.labels, self.task_ids_N)

    # ---- core protocol ---------------------------------------------------------------------
    def observe(self, codes_MD: torch.Tensor, task_ids_M: torch.Tensor) -> torch.Tensor:
        """Observations ``[standardised code, task one-hot]`` for any codes (e.g. of noisy test digits).

        Codes are standardised with the mean/std of the core's own code pool, so evaluation
        codes get exactly the transform the agent was trained with.

        Args:
            codes_MD: M×D float codes. task_ids_M: M int task ids.
        Returns:
            M×(D+13) float32.
        """
        return torch.cat([self.standardise(codes_MD), self.tasks.encode(task_ids_M)], dim=1)

    def standardise(self, codes_MD: torch.Tensor) -> torch.Tensor:
        """M×D codes -> the observation's code part: standardised with the core's pool mean/std."""
        if codes_MD.dim() != 2 or codes_MD.shape[1] != self.code_dim:
            raise UserError(f"codes must be M×{self.code_dim}, got {tuple(codes_MD.shape)}")
        return (codes_MD.float() - self.code_mean_D) / self.code_std_D

    def reset(self, mask_N: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes in the masked rows (all when None): a random source digit and
        a random task per row from the row's own stream. Returns N×O observations of all rows."""
        rows = self._rows(mask_N)
        seeds, counters = self._seeds[rows], self._counters[rows]
        self.digit_idx_N[rows] = row_randint(seeds, counters, _STREAM_DIGIT, len(self.codes_ND))
        self.task_ids_N[rows] = row_randint(seeds, counters, _STREAM_TASK, len(self.tasks))
        self._counters[rows] += 1
        self._needs_reset[rows] = False
        return self.observe(self.codes_ND[self.digit_idx_N], self.task_ids_N)

    def step(self, action_RK: torch.Tensor, ids_R: torch.Tensor | None = None):
        """Translate the digits of rows ``ids`` (all when None) with latents ``action_RK``.

        Returns:
            ``(obs_RO, reward_R, terminated_R, truncated_R, info)``; every episode terminates
            (obs is the final observation); info holds R-tensors ``target``, ``prob`` (reward
            classifier's p(target)), ``d_score``, ``label``, ``task_id`` (+ ``rewards_all`` R×10 with
            ``all_rewards``).
        """
        ids = torch.arange(self.num_envs, device=self.device) if ids_R is None else ids_R.long()
        z = self._check_action(action_RK, len(ids))
        if self._needs_reset[ids].any():
            raise RuntimeError(f"rows {ids[self._needs_reset[ids]].tolist()} stepped before reset: "
                               "episodes are one step long, call reset(mask) first")
        labels, task_ids = self.labels_N[self.digit_idx_N[ids]], self.task_ids_N[ids]
        targets = self.tasks.targets(labels, task_ids)
        with torch.inference_mode():
            code = self.nets["generator"](z)
            logits = self.nets["reward_classifier"](self.nets["decoder"](code))
            d_score = self.nets["discriminator"](code)
        # reward math outside inference mode so callers get ordinary (mutable) tensors
        d_score = d_score.float().reshape(-1).clone()
        penalty = z_prior_penalty(z, self.z_prior_weight, self.z_prior_radius)
        reward = task_reward(logits, targets, d_score, self.alpha, self.beta, self.reward_shape) - penalty
        prob = target_probability(logits, targets)
        self._needs_reset[ids] = True
        obs = self.observe(self.codes_ND[self.digit_idx_N[ids]], task_ids)
        done = torch.ones(len(ids), dtype=torch.bool, device=self.device)
        info = {"target": targets, "prob": prob, "d_score": d_score, "label": labels,
                "task_id": task_ids}
        if self.all_rewards:
            info["rewards_all"] = task_rewards_all(logits, d_score, self.alpha, self.beta,
                                                   self.reward_shape) - penalty[:, None]
        return obs, reward, done, torch.zeros_like(done), info

    def rewards_with_grad(self, z_NK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N×10 rewards for every target digit, N×10 reward-classifier logits) of actions ``z_NK``, through the
        eager networks so gradients reach ``z`` (no clipping, no env state): for references trained by gradient."""
        nets = {k: getattr(net, "original", net) for k, net in self.nets.items()}  # frozen copies carry no grad
        code = nets["generator"](z_NK)
        logits = nets["reward_classifier"](nets["decoder"](code))
        rewards = task_rewards_all(logits, nets["discriminator"](code), self.alpha, self.beta, self.reward_shape)
        return rewards - z_prior_penalty(z_NK, self.z_prior_weight, self.z_prior_radius)[:, None], logits

    def decode_actions(self, action_NK: torch.Tensor) -> torch.Tensor:
        """Images ``Dec(G(clip(z)))`` N×1×28×28 for evaluation and figures (no env state);
        an inference tensor: read it, do not modify it in place."""
        z = self._check_action(action_NK, len(action_NK))
        with torch.inference_mode():
            return self.nets["decoder"](self.nets["generator"](z))

    # ---- private ---------------------------------------------------------------------------
    def _rows(self, mask_N: torch.Tensor | None) -> torch.Tensor:
        return mask_rows(mask_N, self.num_envs, self.device)

    def _check_action(self, action: torch.Tensor, n: int) -> torch.Tensor:
        return check_action(action, n, self.z_dim, self.action_bound, self.device, "z_dim")
