"""Metrics as plain functions (torchmetrics style); classes in ``evaluation/metrics.py`` wrap them."""
import torch


def _sqrt_psd(mat_DD: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(mat_DD)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def gaussian_frechet_distance(mu1_D: torch.Tensor, cov1_DD: torch.Tensor, mu2_D: torch.Tensor, cov2_DD: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2) (computed in float64).

    ``||mu1 - mu2||² + tr(cov1 + cov2 - 2 (cov1^½ cov2 cov1^½)^½)``.
    """
    mu1, mu2, c1, c2 = (t.double() for t in (mu1_D, mu2_D, cov1_DD, cov2_DD))
    s1 = _sqrt_psd(c1)
    cross = torch.linalg.eigvalsh(s1 @ c2 @ s1).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * cross


def frechet_distance(x_ND: torch.Tensor, y_MD: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between Gaussian fits of two sample sets (rows = samples, N, M >= 2)."""
    if x_ND.ndim != 2 or y_MD.ndim != 2 or x_ND.shape[1] != y_MD.shape[1]:
        raise ValueError(f"expected two N×D sample matrices with equal D, got {tuple(x_ND.shape)} and {tuple(y_MD.shape)}")
    if min(len(x_ND), len(y_MD)) < 2:
        raise ValueError("need at least 2 samples in each set to estimate a covariance")
    x, y = x_ND.double(), y_MD.double()
    return gaussian_frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))


def task_accuracy(pred_N: torch.Tensor, target_N: torch.Tensor, task_ids_N: torch.Tensor, num_tasks: int):
    """Per-task accuracy (T float, NaN where a task has no sample) and overall accuracy (float).

    ``pred_N``: predicted class per sample (or N×C logits); ``target_N``: int targets;
    ``task_ids_N``: int task index per sample in ``0..num_tasks-1``.
    """
    correct, total = task_correct_counts(pred_N, target_N, task_ids_N, num_tasks)
    per_task = correct / total.clamp_min(1)
    per_task[total == 0] = float("nan")
    return per_task, (correct.sum() / total.sum().clamp_min(1)).item()


def task_correct_counts(pred_N: torch.Tensor, target_N: torch.Tensor, task_ids_N: torch.Tensor, num_tasks: int):
    """(correct T, total T) float64 counts per task; the sum states of :class:`TaskAccuracy`."""
    if pred_N.ndim == 2:
        pred_N = pred_N.argmax(1)
    if not (pred_N.shape == target_N.shape == task_ids_N.shape) or pred_N.ndim != 1:
        raise ValueError(f"pred, target and task ids must be N-vectors, got {tuple(pred_N.shape)}, "
                         f"{tuple(target_N.shape)}, {tuple(task_ids_N.shape)}")
    if len(task_ids_N) and (task_ids_N.min() < 0 or task_ids_N.max() >= num_tasks):
        raise ValueError(f"task ids must lie in 0..{num_tasks - 1}, got {int(task_ids_N.min())}..{int(task_ids_N.max())}")
    hits = (pred_N == target_N).double()
    correct = torch.zeros(num_tasks, dtype=torch.float64, device=hits.device).index_add_(0, task_ids_N.long(), hits)
    total = torch.bincount(task_ids_N.long(), minlength=num_tasks).double()
    return correct, total


def pearson(x_N: torch.Tensor, y_N: torch.Tensor) -> float:
    """Pearson correlation of two equally long vectors (float64); nan when either is constant."""
    x, y = x_N.double().flatten(), y_N.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denom) if denom > 0 else float("nan")
