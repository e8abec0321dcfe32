"""Experiment A's policy trained by gradient (not from the paper, not RL): the reference ceiling for the RL rows.

Every piece of experiment A's episode is differentiable except eq. 9's steps (buckets, thresholds,
failures). :func:`surrogate_returns` unrolls ``episode_len`` steps of eq. 2 from chosen bases with a
policy's deterministic actions and scores them with a smooth stand-in for eq. 9:

- age progress in buckets, ``p_t = min(sign·(age_t − age_base)/β, buckets left in the command's direction)`` (the nearest
  ``goal_buckets`` of them when set);
  a step earns ``r`` per bucket of progress beyond the best so far (the running maximum, so it pays for
  new buckets once, like M_g), at most one bucket a step (M_g is 0 or 1: a jump over buckets earns one);
- the ``m·r`` bonus is weighted by ``σ((P1 − I_g)/(s·P1))`` and failure (``I_g > P2`` or leaving the
  typical set) by sigmoids of the same softness ``s``; an episode's later steps count by its soft survival, and
  none counts after the step that reaches its last bucket (the env ends the episode there); with
  ``identity_stop`` x a step counts by ``1 − σ((I_g − x·P1)/(s·P1))``, the chance the env does not refuse it, and
  so do the steps after it;
- a surviving step pays −1 for the part of a bucket it did not gain (eq. 9's −1 for a step without a hit)
  and, with ``identity_cost`` c, −c·(I_g/P1)^q (q = ``identity_power``); with ``gender_cost`` g (of ``env.gradient_start``, not part of
  eq. 9) also −g·|p_female(face) − p_female(base)| under the env's gender model (``env.gender_checkpoint``).

A linear traversal that gains 0.6 of a bucket per step for 10 steps, identity far below P1, scores what
eq. 9 pays it: 6 buckets of m·r and −1 for each of the 4 steps without a hit.

:func:`train_by_gradient` fits the policy's deterministic action (PPO's mean) to maximise it with Adam,
through the frozen generator, A_reg and F. With ``env.gradient_start.steps`` > 0, ``rl.train`` runs it before
RL (PPO then starts at the gradient editor); with ``train.epochs=0`` as well, no RL follows and the run's
policy is the gradient editor alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Annotated, Callable, Optional

import torch

from configs.schema_tools import NON_NEGATIVE, POSITIVE, Range
from evaluation.face_metrics import identity_distance
from rl.agents import agent_spec
from rl.agents.base import map_action
from rl.envs.face_age import FaceAgeCore, bucket_index, direction_buckets
from rl.envs.face_age_mdp import identity_penalty
from utils.errors import UserError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GradientStart:
    """``env.gradient_start``: the policy's deterministic action trained by gradient before RL (not from the paper)."""

    steps: Annotated[int, NON_NEGATIVE] = 0
    """Adam steps (0: off)."""
    batch_size: Annotated[int, POSITIVE] = 16
    """Episodes per step: training-pool bases, each with a random command."""
    lr: Annotated[float, Range(0, low_open=True)] = 3e-4
    softness: Annotated[float, Range(0, low_open=True)] = 0.1
    """Width of the sigmoid steps at P1 and P2 (a fraction of P1) and at the typical set's edge (of ε)."""
    seed: int = 0
    """Seeds the bases and commands drawn (the run's seed is added)."""
    gender_cost: Annotated[float, NON_NEGATIVE] = 0.0
    """Each surviving step pays gender_cost × |p_female(face) − p_female(base)| under ``env.gender_checkpoint``
    (a gender classifier of the suite, never the evaluation's judge); 0: eq. 9 alone."""


def check_gender_cost(gender_cost: float, has_gender_model: bool) -> None:
    """A gender cost needs the gender model it is measured with (one line naming both keys)."""
    if gender_cost > 0 and not has_gender_model:
        raise UserError(f"env.gradient_start.gender_cost={gender_cost} needs env.gender_checkpoint "
                        "(a gender_classifier run or checkpoint)")


def differentiable_actions(policy) -> Callable[[torch.Tensor], torch.Tensor]:
    """obs N×O -> the policy's deterministic actions N×A in the env's box, with gradients to its parameters."""
    spec = agent_spec(policy.latentnav_spec["name"])
    return lambda obs: map_action(policy, spec.act(policy, obs))


@contextlib.contextmanager
def training_mode(policy):
    """``policy`` in training mode for the block, then back in the mode it was in (a pretraining step's frame)."""
    was_training = policy.training
    policy.train()
    try:
        yield policy
    finally:
        policy.train(was_training)


def surrogate_returns(core: FaceAgeCore, action_fn: Callable[[torch.Tensor], torch.Tensor], base_BL: torch.Tensor,
                      direction_B: torch.Tensor, softness: float = 0.1,
                      gender: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                      gender_cost: float = 0.0) -> torch.Tensor:
    """The smooth eq. 9 return of each episode (B floats, differentiable in ``action_fn``'s parameters).

    ``core`` supplies the networks, the boundary, the MDP constants (P1, P2 as numbers) and eq. 2
    (:meth:`FaceAgeCore.move`); its rows' state is not touched. ``gender`` (images -> p_female N) with
    ``gender_cost`` > 0 charges each surviving step for the change of p_female from the base.
    """
    mdp, eps = core.mdp, core.epsilon
    check_gender_cost(gender_cost, gender is not None)
    generator = core.nets["generator"]
    with torch.no_grad():
        images0 = generator(base_BL)
        age0, feat0 = core.measure_images(images0)
        female0 = gender(images0).float() if gender_cost > 0 else None
        bucket0 = bucket_index(age0, mdp.age_min, mdp.bucket_width, core.n_buckets)
        left = direction_buckets(bucket0, direction_B, core.n_buckets, mdp.goal_buckets).sum(1).float()
    sign = 1.0 - 2.0 * direction_B.float()
    s, best = base_BL, torch.zeros_like(age0)
    alive, total = torch.ones_like(age0), torch.zeros_like(age0)
    for _ in range(mdp.episode_len):
        s = core.move(s, action_fn(core.observe(s, base_BL, direction_B)), direction_B)
        images = generator(s)
        age, feat = core.measure_images(images, grad=True)
        identity = identity_distance(feat, feat0)
        progress = torch.minimum(sign * (age - age0) / mdp.bucket_width, left)
        new = torch.relu(progress - best).clamp(max=1.0)  # M_g: one bucket a step at most
        best = torch.maximum(best, progress)
        close = torch.sigmoid((mdp.p1 - identity) / (softness * mdp.p1))
        lost = torch.sigmoid((identity - mdp.p2) / (softness * mdp.p1))
        outside = torch.sigmoid((0.5 * (s.shape[1] - s.pow(2).sum(1)).abs() - eps) / (softness * eps))
        fail = 1.0 - (1.0 - lost) * (1.0 - outside)
        kept = (mdp.hit_reward * new * (1.0 + (mdp.close_factor - 1.0) * close) - (1.0 - new)
                - identity_penalty(identity, mdp.p1, mdp.identity_cost, mdp.identity_power))
        if female0 is not None:
            kept = kept - gender_cost * (gender(images).float() - female0).abs()
        # the identity stop refuses the step: nothing paid, nothing failed, the episode over (no stop: inf, taken = 1)
        taken = 1.0 - torch.sigmoid((identity - mdp.stop_distance) / (softness * mdp.p1))
        total = total + alive * taken * ((1.0 - fail) * kept - fail * mdp.fail_penalty)
        done = (best >= left).float()  # every goal bucket reached: the episode ends, as the env's does
        alive = alive * taken * (1.0 - fail) * (1.0 - done)
    return total


def train_by_gradient(policy, core: FaceAgeCore, cfg: GradientStart, seed: int = 0,
                      gender: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> dict:
    """Fit ``policy``'s deterministic action to the surrogate return on ``core``'s pool (``gender``: the
    p_female model ``cfg.gender_cost`` charges under); returns the log rows."""
    params = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(int(cfg.seed) + int(seed))
    pool = core.pool_PL
    actions, rows, start = differentiable_actions(policy), [], time.time()
    with training_mode(policy):
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(len(pool), (cfg.batch_size,), generator=gen).to(pool.device)
            direction = torch.randint(2, (cfg.batch_size,), generator=gen).to(pool.device)
            ret = surrogate_returns(core, actions, pool[idx], direction, cfg.softness, gender,
                                    cfg.gender_cost).mean()
            optim.zero_grad()
            (-ret).backward()
            optim.step()
            if step == 1 or step % 10 == 0 or step == cfg.steps:
                rows.append({"step": step, "surrogate_return": round(ret.item(), 3),
                             "wall_s": round(time.time() - start, 1)})
                log.info("gradient start: step %d/%d, surrogate return %.2f (%.0f s)", step, cfg.steps, ret.item(),
                         time.time() - start)
    return {"steps": cfg.steps, "curve": rows}
