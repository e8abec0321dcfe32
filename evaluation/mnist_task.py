"""Experiment B's evaluation protocol (docs/experiment-b.md), batched over digits *and* tasks.

For every held-out digit and every task of the set: encode the (optionally noisy) digit, act,
decode ``Dec(G(z))`` and ask the independent judge whether it shows the target. The reward
classifier's accuracy on the same outputs and the mean realism D(G(z)) are reported beside it;
their gap to the judge measures how much the agent fools its own reward model.
"""
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric

from datamodules.mnist import add_pixel_noise
from evaluation.metrics import TaskAccuracy
from utils.io import atomic_write_bytes, atomic_write_npz

log = logging.getLogger(__name__)


@dataclass
class TranslationScores:
    """Accuracies (fractions) of one evaluation pass; per-task lists follow the task set's order."""

    task_names: List[str]
    noise_std: float
    judge_acc: float
    judge_acc_per_task: List[float]
    reward_acc: float
    reward_acc_per_task: List[float]
    realism: float
    n_digits: int
    outputs: Optional[Dict[str, np.ndarray]] = field(default=None, repr=False)


@torch.inference_mode()
def encode_noisy(encoder: nn.Module, images_N1HW: torch.Tensor, noise_std: float, batch_size: int,
                 seed: int) -> torch.Tensor:
    """N×D codes of the images after N(0, noise_std²) pixel noise (clipped), drawn from a generator
    seeded by ``seed`` chunk by chunk: the same seed and chunks give the same noisy inputs."""
    gen = torch.Generator(device=images_N1HW.device).manual_seed(seed)
    return torch.cat([encoder(add_pixel_noise(chunk.float(), noise_std, gen)) for chunk in images_N1HW.split(batch_size)])


@torch.inference_mode()
def evaluate_translation(
    act_fn: Callable[[torch.Tensor], torch.Tensor],
    core,
    encoder: nn.Module,
    judge: nn.Module,
    images_N1HW: torch.Tensor,
    labels_N: torch.Tensor,
    noise_std: float = 0.0,
    batch_size: int = 1000,
    seed: int = 0,
    keep_outputs: bool = False,
) -> TranslationScores:
    """Score a policy on every (digit, task) pair; one batched pass per chunk of digits.

    ``core`` supplies the task set, ``observe``, ``decode_actions`` and the frozen generator,
    reward classifier and discriminator (an :class:`rl.envs.MnistTaskCore`). ``act_fn`` maps
    M×O observations to M×K actions (deterministic). Noise N(0, noise_std²) is added to the
    [0, 1] input pixels (clipped) before encoding, with a generator seeded by ``seed``.
    With ``keep_outputs`` the decoded images (N·T×28×28), targets, labels and task ids are returned.
    """
    tasks, num_tasks = core.tasks, len(core.tasks)
    judge_acc, reward_acc, realism = TaskAccuracy(num_tasks), TaskAccuracy(num_tasks), MeanMetric()
    kept: Dict[str, List[torch.Tensor]] = {"images": [], "targets": [], "labels": [], "task_ids": []}
    all_codes = encode_noisy(encoder, images_N1HW, noise_std, batch_size, seed)
    for codes, labels in zip(all_codes.split(batch_size), labels_N.split(batch_size)):
        # every digit with every task: rows (digit 0, task 0..T-1), (digit 1, task 0..T-1), ...
        task_ids = torch.arange(num_tasks, device=codes.device).repeat(len(codes))
        codes_rep, labels_rep = codes.repeat_interleave(num_tasks, 0), labels.repeat_interleave(num_tasks)
        targets = tasks.targets(labels_rep, task_ids)
        z = act_fn(core.observe(codes_rep, task_ids))
        out = core.decode_actions(z)
        judge_acc.update(judge(out), targets, task_ids)
        reward_acc.update(core.nets["reward_classifier"](out), targets, task_ids)
        realism.update(core.nets["discriminator"](core.nets["generator"](z)).reshape(-1))
        if keep_outputs:
            for key, value in (("images", out[:, 0]), ("targets", targets), ("labels", labels_rep), ("task_ids", task_ids)):
                kept[key].append(value.cpu().clone())
    outputs = {k: torch.cat(v).numpy() for k, v in kept.items()} if keep_outputs else None
    return TranslationScores(
        task_names=list(tasks.names), noise_std=noise_std, judge_acc=judge_acc.overall(),
        judge_acc_per_task=judge_acc.compute().reshape(-1).tolist(), reward_acc=reward_acc.overall(),
        reward_acc_per_task=reward_acc.compute().reshape(-1).tolist(), realism=float(realism.compute()),
        n_digits=len(labels_N), outputs=outputs,
    )


def export_npz(outputs: Dict[str, np.ndarray], path: Path, noisy: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Write ``images`` (M×28×28 float32 in [0,1]), ``targets`` (M int64), ``labels`` and ``task_ids`` atomically;
    with ``noisy`` (the outputs for noisy inputs of the same digits) also ``noisy_images`` and ``noisy_targets``."""
    arrays = {"images": outputs["images"].astype(np.float32), "targets": outputs["targets"].astype(np.int64),
              "labels": outputs["labels"].astype(np.int64), "task_ids": outputs["task_ids"].astype(np.int64)}
    if noisy is not None:
        arrays.update(noisy_images=noisy["images"].astype(np.float32), noisy_targets=noisy["targets"].astype(np.int64))
    atomic_write_npz(Path(path), arrays)


@torch.inference_mode()
def translation_grid(act_fn, core, encoder: nn.Module, images_N1HW: torch.Tensor, path: Path, noise_std: float = 0.0,
                     seed: int = 0) -> None:
    """PNG grid: one row per input digit, first column the (noisy) input, then one column per task."""
    from torchvision.utils import save_image

    gen = torch.Generator(device=images_N1HW.device).manual_seed(seed)
    inputs = add_pixel_noise(images_N1HW.float(), noise_std, gen)
    num_tasks = len(core.tasks)
    codes = encoder(inputs).repeat_interleave(num_tasks, 0)
    task_ids = torch.arange(num_tasks).repeat(len(inputs))
    out = core.decode_actions(act_fn(core.observe(codes, task_ids))).reshape(len(inputs), num_tasks, 1, 28, 28)
    tiles = torch.cat([inputs[:, None], out], dim=1).reshape(-1, 1, 28, 28)
    buf = io.BytesIO()
    save_image(tiles, buf, format="png", nrow=num_tasks + 1, padding=2, pad_value=0.5)
    atomic_write_bytes(Path(path), buf.getvalue())


@torch.inference_mode()
def sample_quality(core, judge: nn.Module, n: int = 5000, seed: int = 0, threshold: float = 0.9,
                   top_k: int = 10) -> Dict[str, object]:
    """How good the l-GAN's random samples are by the judge: the ceiling any policy starts from.

    Draws z ~ N(0, I) (clipped to the action box), decodes Dec(G(z)) and reports the fraction the
    judge classifies with probability > ``threshold``, the judged class histogram, and the generator's
    coverage per target digit c: the share of samples judged c with p > ``threshold``, and the judge's mean
    p(c) over the ``top_k`` samples the *reward* classifier rates most likely c (near 1: a reward-maximiser
    finds a c that the judge agrees with among random samples alone; low: the generator hardly draws c, or
    the reward and the judge disagree about it).
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, core.z_dim, generator=gen).clamp(-core.action_bound, core.action_bound)
    images = core.decode_actions(z)
    probs = judge(images).softmax(1)
    reward_p = core.nets["reward_classifier"](images).softmax(1)
    top_p, top_c = probs.max(1)
    confident = top_p > threshold
    classes = torch.arange(probs.shape[1])
    best = reward_p.topk(min(top_k, n), dim=0).indices  # k×C: the reward's favourite samples per class
    return {"n": n, "threshold": threshold, "frac_confident": float(confident.float().mean()),
            "class_hist": (torch.bincount(top_c, minlength=probs.shape[1]).float() / n).tolist(),
            "coverage_share": [float((confident & (top_c == c)).float().mean()) for c in classes.tolist()],
            "coverage_top_k": top_k,
            "coverage_best_judged_p": probs[best, classes].mean(0).tolist()}


def seeded_mlp(width: int, hidden_sizes: tuple, out: int, seed: int) -> nn.Sequential:
    """A ReLU MLP whose initial weights depend on ``seed`` only (the global random state is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = []
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, out))


def recognition_ceiling(
    core,
    test_codes: Dict[str, torch.Tensor],
    test_labels_N: torch.Tensor,
    hidden_sizes: tuple = (256, 256),
    steps: int = 5000,
    batch_size: int = 128,
    seed: int = 0,
) -> Dict[str, float]:
    """Upper reference for any policy that reads the AE code: how well the *input* digit can be told
    from its code at all.

    A supervised MLP (the actor's width) learns the label from the standardised codes of the agent's
    own episode pool (``core.codes_ND``/``labels_N``, labels given directly instead of through
    rewards; ``steps`` Adam steps on random batches), then classifies the test codes. On the + and
    − sets a wrong input label always gives a wrong target, so this accuracy bounds the judged
    accuracy from above (up to the generator's quality).

    Args:
        core: the agent's :class:`rl.envs.MnistTaskCore` (its pool and code standardisation).
        test_codes: condition name (e.g. ``"clean"``, ``"noisy"``) -> M×D codes of the test digits.
        test_labels_N: their M labels.
    Returns:
        condition -> accuracy (fraction).
    """
    gen = torch.Generator().manual_seed(seed)
    probe = seeded_mlp(core.code_dim, hidden_sizes, 10, seed)
    x, y = core.standardise(core.codes_ND), core.labels_N
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    for _ in range(steps):  # a fixed number of Adam steps, whatever the pool's size
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(probe(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {}
    with torch.inference_mode():
        for name, codes in test_codes.items():
            pred = probe(core.standardise(codes)).argmax(1)
            out[name] = float((pred == test_labels_N).float().mean())
    return out


def pipeline_ceiling(core, steps: int, hidden_sizes: tuple = (256, 256), batch_size: int = 128,
                     seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A reference for what the generator and the reward allow, found without RL: a policy of the actor's shape
    (MLP, ``bound · tanh`` output) trained by gradient through the frozen Dec∘G, reward classifier and D.

    The loss is minus the env's reward for the row's target digit, plus ``-max(log p(target), -10)`` so that
    regions of z where the reward classifier gives the target p ≈ 0 (flat in the reward) still have a slope.
    Observations come from the core's own episode pool, as the agent's do. Returns the trained policy's
    ``obs -> z`` (score it with :func:`evaluate_translation`).
    """
    gen = torch.Generator().manual_seed(seed)
    policy = seeded_mlp(core.obs_dim, hidden_sizes, core.z_dim, seed)
    bound = core.action_bound
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = torch.randint(len(core.codes_ND), (batch_size,), generator=gen)
        task_ids = torch.randint(len(core.tasks), (batch_size,), generator=gen)
        z = bound * torch.tanh(policy(core.observe(core.codes_ND[rows], task_ids)))
        rewards, logits = core.rewards_with_grad(z)
        target = core.tasks.targets(core.labels_N[rows], task_ids)[:, None]
        reward = rewards.gather(1, target)[:, 0]
        slope = torch.log_softmax(logits, 1).gather(1, target)[:, 0].clamp_min(-10.0)
        loss = -(reward + slope).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    return lambda obs: bound * torch.tanh(policy(obs))
