"""InterfaceGAN (Shen et al.), reimplemented: the linear-boundary baseline of experiment A.

A semantic boundary is the unit normal ``n`` of a linear SVM separating latents with high
attribute scores from latents with low ones; editing moves a latent along ``n``. Compared with
the authors' ``utils/manipulator.py`` this keeps the algorithm and the shape errors, but uses a
seeded ``numpy.random.Generator`` (the original shuffles with the global RNG), current
scikit-learn, any number of conditions in :func:`project_boundary`, and batched traversals.

Conventions: latents ``z_NL`` float arrays (numpy or torch); boundaries are unit L-vectors that
point towards higher scores (for age: older); the hyperplane passes through the origin (the SVM
intercept is dropped, as in InterfaceGAN).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from sklearn import svm

from utils.errors import UserError

log = logging.getLogger(__name__)


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise UserError(f"`{name}` must be a numpy array or torch tensor, got {type(x).__name__}")
    return x


def _unit(v: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-12:
        raise UserError(f"`{name}` has norm {norm}: expected a finite non-zero direction")
    return (v / norm).astype(np.float32)


def _boundary_vector(boundary: Any, latent_dim: int | None = None) -> np.ndarray:
    # InterfaceGAN stores boundaries as 1×L; accept that and plain L vectors
    b = _as_numpy(boundary, "boundary").astype(np.float64)
    if b.ndim == 2 and b.shape[0] == 1:
        b = b[0]
    if b.ndim != 1 or (latent_dim is not None and b.shape[0] != latent_dim):
        want = f"[{latent_dim}] or [1, {latent_dim}]" if latent_dim else "[latent_dim] or [1, latent_dim]"
        raise UserError(f"Input `boundary` should have shape {want}, got {list(b.shape)}")
    return b


def _checked_samples(latents_NL: Any, scores_N: Any) -> tuple[np.ndarray, np.ndarray]:
    # N×L latents and N finite scores (N×1 accepted, InterfaceGAN's layout)
    z = _as_numpy(latents_NL, "latents_NL")
    if z.ndim != 2:
        raise UserError(f"Input `latents_NL` should have shape [num_samples, latent_dim], "
                        f"got {list(z.shape)}")
    s = _as_numpy(scores_N, "scores_N")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1 or s.shape[0] != z.shape[0]:
        raise UserError(f"Input `scores_N` should have shape [{z.shape[0]}] or [{z.shape[0]}, 1] "
                        f"to match `latents_NL` {list(z.shape)}, got {list(s.shape)}")
    if not (np.isfinite(z).all() and np.isfinite(s).all()):
        raise UserError("`latents_NL` and `scores_N` must be finite (InterfaceGAN's invalid_value "
                        "filtering is the caller's job)")
    return z, s


def train_boundary(
    latents_NL: Any,
    scores_N: Any,
    ratio: float = 0.02,
    split: float = 0.7,
    seed: int = 0,
    svm_c: float = 1.0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit InterfaceGAN's linear SVM boundary for one attribute.

    The ``ratio`` of samples with the highest scores are positives and the same number with the
    lowest scores negatives; each group is shuffled (seeded) and split ``split`` / ``1 - split``
    into train / validation; ``SVC(kernel="linear")`` is fit on the train part.

    Args:
        latents_NL: N×L latents. scores_N: N scores (or N×1, InterfaceGAN's layout); finite.
        ratio: fraction in (0, 0.5] taken at each end (InterfaceGAN default 0.02).
        split: train fraction of each end, in (0, 1).
        seed: seeds the shuffles. svm_c: the SVM's C.
    Returns:
        ``(boundary_L float32 unit normal towards higher scores, stats)`` with ``train_acc``,
        ``val_acc`` (NaN when there is no validation sample), ``n_pos``, ``n_neg``, ``n_train``,
        ``n_val``, ``pos_min_score``, ``neg_max_score``, ``cosine_to_mean_diff``.
    """
    z, s = _checked_samples(latents_NL, scores_N)
    if not (0.0 < ratio <= 0.5) or not (0.0 < split < 1.0):
        raise UserError(f"ratio={ratio}, split={split}: expected 0 < ratio <= 0.5, 0 < split < 1")
    chosen = int(z.shape[0] * ratio)
    n_train = int(chosen * split)
    if n_train < 1:
        raise UserError(f"ratio={ratio} of {z.shape[0]} samples gives {chosen} per class and "
                        f"{n_train} for training: use more samples or a larger ratio")
    order = np.argsort(-s, kind="stable")  # highest score first
    pos, neg = z[order[:chosen]], z[order[-chosen:]]
    rng = np.random.default_rng(seed)
    pos, neg = pos[rng.permutation(chosen)], neg[rng.permutation(chosen)]
    x_train = np.concatenate([pos[:n_train], neg[:n_train]]).astype(np.float64)
    y_train = np.r_[np.ones(n_train, int), np.zeros(n_train, int)]
    x_val = np.concatenate([pos[n_train:], neg[n_train:]]).astype(np.float64)
    y_val = np.r_[np.ones(chosen - n_train, int), np.zeros(chosen - n_train, int)]
    clf = svm.SVC(kernel="linear", C=svm_c).fit(x_train, y_train)
    boundary = _unit(clf.coef_.reshape(-1), "SVM normal")
    mean_diff = _unit(pos.mean(0) - neg.mean(0), "class mean difference")
    stats = {
        "train_acc": float((clf.predict(x_train) == y_train).mean()),
        "val_acc": float((clf.predict(x_val) == y_val).mean()) if len(y_val) else float("nan"),
        "n_pos": chosen, "n_neg": chosen, "n_train": 2 * n_train, "n_val": len(y_val),
        "pos_min_score": float(s[order[chosen - 1]]), "neg_max_score": float(s[order[-chosen]]),
        "cosine_to_mean_diff": float(boundary @ mean_diff),
    }
    log.info("InterfaceGAN boundary: %d+%d samples, train acc %.3f, val acc %.3f",
             chosen, chosen, stats["train_acc"], stats["val_acc"])
    return boundary, stats


def project_boundary(primal_L: Any, *conditions_L: Any) -> np.ndarray:
    """Conditional boundary: ``primal`` with the span of ``conditions`` projected out.

    InterfaceGAN handles one or two conditions in closed form; an orthonormal basis of the
    conditions (QR) gives the same result for any number and does not need unit inputs.

    Args:
        primal_L: L (or 1×L) boundary to edit along. conditions_L: boundaries to keep fixed.
    Returns:
        Unit L float32 vector orthogonal to every condition (``primal`` normalised if none).
    """
    primal = _boundary_vector(primal_L)
    if not conditions_L:
        return _unit(primal, "primal_L")
    conds = np.stack([_boundary_vector(c, primal.shape[0]) for c in conditions_L], axis=1)
    q, r = np.linalg.qr(conds)
    diag = np.abs(np.diag(r))
    if diag.min() < 1e-6 * max(diag.max(), 1e-12):
        raise UserError(f"the {conds.shape[1]} condition boundaries are linearly dependent: "
                        "pass independent directions")
    new = primal - q @ (q.T @ primal)
    if np.linalg.norm(new) < 1e-6 * np.linalg.norm(primal):
        raise UserError("`primal_L` lies in the span of the conditions: nothing is left to edit")
    return _unit(new, "projected boundary")


def linear_interpolate(
    latents_NL: Any, boundary_L: Any, start: float = -3.0, end: float = 3.0, steps: int = 7,
    relative: bool = False,
) -> np.ndarray:
    """InterfaceGAN's traversal: put each latent at ``steps`` signed distances from the boundary.

    With ``n`` the unit boundary and ``d = z·n`` a latent's signed distance to the hyperplane
    through the origin, step ``k`` is ``z + (t_k - d)·n`` with ``t_k = linspace(start, end)``
    (so the distance becomes exactly ``t_k``; components orthogonal to ``n`` are kept).
    ``relative=True`` measures ``t_k`` from each latent's own distance instead (step ``k`` is
    ``z + t_k·n``): the edit of a commanded size and direction, starting at the base face.

    Args:
        latents_NL: N×L base latents. boundary_L: L (or 1×L) direction (normalised here).
        start, end: first and last signed distance. steps: number of points (>= 1).
    Returns:
        N×steps×L float32.
    """
    z = _as_numpy(latents_NL, "latents_NL").astype(np.float64)
    if z.ndim != 2:
        raise UserError(f"Input `latents_NL` should have shape [num_samples, latent_dim], "
                        f"got {list(z.shape)}")
    n = _unit(_boundary_vector(boundary_L, z.shape[1]), "boundary_L").astype(np.float64)
    if int(steps) != steps or steps < 1:
        raise UserError(f"steps={steps}: expected an int >= 1")
    targets_S = np.linspace(start, end, int(steps))
    dist_N = z @ n
    offsets_NS = targets_S[None, :] - (0.0 if relative else dist_N[:, None])
    return (z[:, None, :] + offsets_NS[:, :, None] * n[None, None, :]).astype(np.float32)


@torch.inference_mode()
def score_latents(
    generator: Any,
    scorer: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` latents from a generator adapter and score their images, in batches.

    Args:
        generator: adapter with ``sample(n, generator)`` and ``__call__(z) -> images``.
        scorer: images -> N scores (or N×1), e.g. the age regressor (years).
        n: samples. batch_size: images per forward. seed: seeds a CPU ``torch.Generator``.
    Returns:
        ``(latents_NL float32 CPU, scores_N float32 CPU)``.
    """
    if n < 1 or batch_size < 1:
        raise UserError(f"n={n}, batch_size={batch_size}: expected both >= 1")
    z_NL = generator.sample(int(n), torch.Generator().manual_seed(int(seed)))
    scores = []
    for chunk in z_NL.split(int(batch_size)):
        out = scorer(generator(chunk))
        if out.numel() != len(chunk):
            raise UserError(f"scorer returned shape {tuple(out.shape)} for {len(chunk)} images: "
                            "expected one score per image")
        scores.append(out.reshape(-1).float().cpu())
    return z_NL.float().cpu(), torch.cat(scores)
