"""Experiment A's policy fitted to per-face edits (not from the paper): the imitation start.

One policy network for every face, trained on eq. 9 or its smooth stand-in from a linear start, bends
towards A_reg's *average* preferences. An edit optimised for one face alone finds that face's own
direction. This start teaches the policy those per-face edits. With the suite's models it does not pay
(benchmarks/RESULTS.md, "per-face edits under the judges"): the judges see per-face edits no better than
the linear edit, and a student fitted to 1,024 of them learns only their average direction.

1. **Teacher.** ``samples`` bases of the training pool, each with a random command, are moved by Adam on
   their own latent offset to raise (older) or lower (younger) A_reg's age, the offset kept inside a ball of
   ``extent`` boundary units (:func:`evaluation.age_signal.gradient_edits`). Nothing else enters the
   teacher: the ball's radius is what keeps the identity.
2. **Student.** The policy's deterministic action is fitted so that eq. 2 moves each base along the straight
   line to its teacher's end in ``episode_len`` equal steps: at every state of that line the predicted move
   is pulled towards ``offset / episode_len`` (mean squared error, Adam).

The teacher's edits depend on the env (generator, A_reg, pools) and the teacher settings, not on the run's
seed; they are kept under ``cache`` (a folder; null: none), so several seeds of one config pay for them
once. The run's seed sets the student's initial weights and the order of its batches. With ``train.epochs=0``
the run's policy is the student alone; otherwise RL continues from it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Dict, Optional

import torch

from configs.schema_tools import NON_NEGATIVE, POSITIVE, Range
from evaluation.age_signal import gradient_edits
from rl.builders.face_age_gradient import differentiable_actions, training_mode
from rl.envs.face_age import FaceAgeCore
from utils.io import atomic_torch_save

log = logging.getLogger(__name__)
CHUNK = 32  # teacher faces optimised at once (each face's offset is its own; the chunk only batches the nets)


@dataclasses.dataclass
class ImitationStart:
    """``env.imitation_start``: the policy fitted to per-face edits through A_reg before RL (not from the paper)."""

    samples: Annotated[int, NON_NEGATIVE] = 0
    """Training-pool bases the teacher edits, each with a random command (0: off)."""
    extent: Annotated[float, Range(0, low_open=True)] = 3.0
    """Radius of the ball each teacher offset stays in, in boundary units."""
    teacher_steps: Annotated[int, POSITIVE] = 40
    """Adam steps of each teacher edit."""
    teacher_lr: Annotated[float, Range(0, low_open=True)] = 0.1
    epochs: Annotated[int, POSITIVE] = 300
    """Passes of the student over the teacher's edits."""
    batch_size: Annotated[int, POSITIVE] = 64
    """Teacher edits per student step (each gives ``episode_len`` states)."""
    lr: Annotated[float, Range(0, low_open=True)] = 1e-3
    seed: int = 0
    """Seeds the teacher's bases and commands (not the run's seed: every seed of a config shares the teacher)."""
    cache: Optional[str] = "runs/teacher_cache"
    """Folder keeping the teacher's edits by a hash of what they depend on (null: recompute every run)."""


def teacher_bases(core: FaceAgeCore, cfg: ImitationStart):
    """(bases N×L from the training pool, commands N: 0 older, 1 younger), drawn with ``cfg.seed``."""
    gen = torch.Generator().manual_seed(int(cfg.seed))
    n = min(int(cfg.samples), len(core.pool_PL))
    idx = torch.randperm(len(core.pool_PL), generator=gen)[:n]
    return core.pool_PL[idx.to(core.pool_PL.device)].clone(), torch.randint(2, (n,), generator=gen)


def _cache_file(core: FaceAgeCore, cfg: ImitationStart, base_NL: torch.Tensor, direction_N: torch.Tensor) -> Path:
    """The teacher's cache file: a hash of its settings, the bases and commands, and A_reg's ages on the first
    bases' faces (so a retrained or other age model, or another generator, never reads another's edits)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k in ("extent", "teacher_steps", "teacher_lr")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    with torch.no_grad():
        probe = core.nets["age_model"](core.nets["generator"](base_NL[:8])).float().reshape(-1).cpu()
    for t in (base_NL.float().cpu(), direction_N.cpu(), probe):
        digest.update(str(tuple(t.shape)).encode() + t.contiguous().numpy().tobytes())
    return Path(cfg.cache) / f"{digest.hexdigest()[:40]}.pt"


def teacher_offsets(core: FaceAgeCore, cfg: ImitationStart, base_NL: torch.Tensor,
                    direction_N: torch.Tensor) -> torch.Tensor:
    """N×L offsets: each base's ball-bounded edit that moves A_reg's age in its command's direction (cached)."""
    path = None if cfg.cache is None else _cache_file(core, cfg, base_NL, direction_N)
    if path is not None and path.is_file():
        log.warning("imitation start: the teacher's %d edits from the cache %s", len(base_NL), path)
        return torch.load(path, weights_only=True).to(base_NL.device)
    start, parts = time.time(), []
    sign = 1.0 - 2.0 * direction_N.float().to(base_NL.device)
    for k, (z, s) in enumerate(zip(base_NL.split(CHUNK), sign.split(CHUNK))):
        parts.append(gradient_edits(core.nets["generator"], core.nets["age_model"], z, s, cfg.extent,
                                    cfg.teacher_steps, cfg.teacher_lr) - z)
        log.info("imitation start: teacher %d/%d faces (%.0f s)", min((k + 1) * CHUNK, len(base_NL)),
                 len(base_NL), time.time() - start)
    offsets = torch.cat(parts)
    log.warning("imitation start: the teacher edited %d faces in %.0f s", len(base_NL), time.time() - start)
    if path is not None:
        atomic_torch_save(offsets.cpu(), path)
    return offsets


def straight_line_states(base_NL: torch.Tensor, offset_NL: torch.Tensor, steps: int) -> torch.Tensor:
    """N×steps×L: the states an episode passes through on the way from each base to base + offset in equal steps
    (the base first, the last state before the end)."""
    frac = torch.arange(steps, dtype=base_NL.dtype, device=base_NL.device) / steps
    return base_NL[:, None, :] + frac[None, :, None] * offset_NL[:, None, :]


def imitation_loss(core: FaceAgeCore, actions, base_NL: torch.Tensor, direction_N: torch.Tensor,
                   offset_NL: torch.Tensor) -> torch.Tensor:
    """Mean over the line's states of ‖eq. 2's move under the policy − offset / episode_len‖² (differentiable)."""
    steps = core.mdp.episode_len
    n, L = base_NL.shape
    s = straight_line_states(base_NL, offset_NL, steps).reshape(n * steps, L)
    base = base_NL.repeat_interleave(steps, 0)
    direction = direction_N.repeat_interleave(steps, 0)
    move = core.move(s, actions(core.observe(s, base, direction)), direction) - s
    target = (offset_NL / steps).repeat_interleave(steps, 0)
    return (move - target).pow(2).sum(1).mean()


def train_by_imitation(policy, core: FaceAgeCore, cfg: ImitationStart, seed: int = 0) -> Dict[str, Any]:
    """Fit ``policy``'s deterministic action to the teacher's per-face edits on ``core``'s training pool;
    returns the log (teacher size and time, the loss per epoch at a few epochs)."""
    start = time.time()
    base, direction = teacher_bases(core, cfg)
    direction = direction.to(base.device)
    offsets = teacher_offsets(core, cfg, base, direction)
    teacher_s = time.time() - start
    params = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(int(seed))
    actions, rows = differentiable_actions(policy), []
    with training_mode(policy):
        for epoch in range(1, cfg.epochs + 1):
            total = 0.0
            for idx in torch.randperm(len(base), generator=gen).split(cfg.batch_size):
                idx = idx.to(base.device)
                loss = imitation_loss(core, actions, base[idx], direction[idx], offsets[idx])
                optim.zero_grad()
                loss.backward()
                optim.step()
                total += loss.item() * len(idx)
            if epoch == 1 or epoch % 25 == 0 or epoch == cfg.epochs:
                rows.append({"epoch": epoch, "loss": round(total / len(base), 5),
                             "wall_s": round(time.time() - start, 1)})
                log.info("imitation start: epoch %d/%d, loss %.4f", epoch, cfg.epochs, total / len(base))
    return {"samples": len(base), "teacher_s": round(teacher_s, 1),
            "offset_norm": round(offsets.norm(dim=1).mean().item(), 3), "curve": rows}
