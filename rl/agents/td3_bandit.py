"""TD3's options for one-step episodes with a known reward structure (experiment B; not from the paper).

:func:`rl.agents.td3.build` makes a :class:`BanditTD3` when any of the options below is set; with the defaults it
builds the plain Tianshou TD3. Every episode of the MNIST task env ends after one step, so the critic's target is
the reward itself (no bootstrapping). The options use what the env knows about its reward (``env.all_rewards=true``
puts every target digit's reward of the step's image in ``info["rewards_all"]``):

- ``relabel``: each stored (code, z) transition counts for *every* task of the set: its observation is rebuilt
  with each task's encoding and gets that task's exact reward (T× data per env step); the actor is trained on
  all T tasks of each sampled code too.
- ``critic=per_target``: the critic sees the action z only and outputs one Q head per target digit
  (Q_c(z) ≈ reward of z for target c); the actor's loss takes the head of each row's target (the env's label is
  privileged training information, as for an asymmetric critic). All ten heads learn from every transition.
- ``imitate`` w > 0 (with ``critic=per_target``): per target digit c, the sampled action with the highest
  *observed* reward for c is a known-good action for rows whose target is c; rows whose action the critic values
  more than ``imitate_margin`` below that reward are pulled towards it (w·squared distance in the policy's
  [-1, 1] units). It frees (input digit, task) cells stuck where p_target ≈ 0 and the critic is flat.
- ``actor_q``: the actor's objective over the twin critics: ``first`` (TD3), ``min`` or ``mean``.

The task tables (``task_encodings``: T×E encodings of the observation's task part; ``task_targets``: 10×T, the
target of task t for input label l) are the env's: the mnist_task env builder hands them over
(:meth:`rl.builders.mnist_task.MnistTaskFactory.agent_hparams`).
"""
from __future__ import annotations

from typing import Any

import torch
from tianshou.algorithm import TD3
from tianshou.algorithm.modelfree.td3 import TD3TrainingStats
from torch import nn


class PerTargetCritic(nn.Module):
    """``(obs, act) -> N×C``: Q of action ``act`` for each of C target digits (``obs`` ignored)."""

    def __init__(self, act_dim: int, hidden_sizes: list[int], num_targets: int = 10):
        super().__init__()
        layers, width = [], act_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, num_targets))

    def forward(self, obs: Any, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.as_tensor(act, dtype=torch.float32, device=self.net[-1].weight.device))


class BanditTD3(TD3):
    """TD3 whose critics regress the one-step reward directly, with relabeling / per-target heads / imitation."""

    def __init__(self, *, task_encodings: list, task_targets: list, relabel: bool, per_target: bool,
                 actor_q: str = "first", imitate: float = 0.0, imitate_margin: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.register_buffer("task_enc_TE", torch.as_tensor(task_encodings, dtype=torch.float32))
        self.register_buffer("task_tgt_LT", torch.as_tensor(task_targets, dtype=torch.int64))
        self.relabel, self.per_target, self.actor_q = bool(relabel), bool(per_target), actor_q
        self.imitate, self.imitate_margin = float(imitate), float(imitate_margin)

    def _preprocess_batch(self, batch, buffer, indices):
        if not bool(buffer.done[indices].all()):
            raise ValueError("BanditTD3 needs one-step episodes (every transition terminal)")
        return batch  # the target is the reward: no n-step return, no target networks

    def _expand(self, obs_BO: torch.Tensor, label_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sampled code with every task: (B·T)×O observations and their B·T targets."""
        T, E = self.task_enc_TE.shape
        code = obs_BO[:, : obs_BO.shape[1] - E]
        obs = torch.cat([code.repeat_interleave(T, 0), self.task_enc_TE.repeat(len(code), 1)], 1)
        return obs, self.task_tgt_LT[label_B].reshape(-1)

    def _q(self, critic: nn.Module, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        q = critic(obs, act)
        return q.gather(1, target[:, None])[:, 0] if self.per_target else q.reshape(-1)

    def _critic_loss(self, critic: nn.Module, obs, act, label, target, rewards_all) -> torch.Tensor:
        if self.per_target:  # all ten heads from every transition
            return (critic(None, act) - rewards_all).pow(2).mean()
        if self.relabel:
            obs_r, tgt_r = self._expand(obs, label)
            q = critic(obs_r, act.repeat_interleave(len(self.task_enc_TE), 0)).reshape(-1)
            return (q - rewards_all.gather(1, tgt_r.reshape(len(obs), -1)).reshape(-1)).pow(2).mean()
        return (critic(obs, act).reshape(-1) - rewards_all.gather(1, target[:, None])[:, 0]).pow(2).mean()

    def _actor_loss(self, obs, act, label, target, rewards_all) -> torch.Tensor:
        obs_a, tgt_a = self._expand(obs, label) if self.relabel else (obs, target)
        a = self.policy.actor(obs_a)[0]
        q = self._q(self.critic, obs_a, a, tgt_a)
        if self.actor_q != "first":
            q2 = self._q(self.critic2, obs_a, a, tgt_a)
            q = torch.min(q, q2) if self.actor_q == "min" else (q + q2) / 2
        loss = -q.mean()
        if self.imitate > 0:
            best_r, best_b = rewards_all.max(0)  # per target digit: the batch's best observed action
            pull = (best_r[tgt_a] - q.detach() > self.imitate_margin).float()
            loss = loss + self.imitate * (pull * (a - act[best_b[tgt_a]]).pow(2).sum(1)).mean()
        return loss

    def _update_with_batch(self, batch) -> TD3TrainingStats:
        dev = self.task_enc_TE.device  # the networks' device; the buffer's batch is numpy
        obs = torch.as_tensor(batch.obs, dtype=torch.float32, device=dev)
        act = torch.as_tensor(batch.act, dtype=torch.float32, device=dev).clamp(-1.0, 1.0)  # what the env applied
        label = torch.as_tensor(batch.info.label, device=dev).long()
        target = torch.as_tensor(batch.info.target, device=dev).long()
        rewards_all = torch.as_tensor(batch.info.rewards_all, dtype=torch.float32, device=dev)  # B×10
        losses = []
        for critic, optim in ((self.critic, self.critic_optim), (self.critic2, self.critic2_optim)):
            loss = self._critic_loss(critic, obs, act, label, target, rewards_all)
            optim.step(loss)
            losses.append(loss.item())
        if self._cnt % self.update_actor_freq == 0:
            actor_loss = self._actor_loss(obs, act, label, target, rewards_all)
            self._last = actor_loss.item()
            self.policy_optim.step(actor_loss)
        self._cnt += 1
        return TD3TrainingStats(actor_loss=self._last, critic1_loss=losses[0], critic2_loss=losses[1])
