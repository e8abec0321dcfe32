"""torchmetrics classes over ``evaluation.functional`` (sum states only: they reduce across devices)."""
import torch
from torchmetrics import Metric

from evaluation.functional import gaussian_frechet_distance, task_correct_counts


class FrechetDistance(Metric):
    """Fréchet distance between the Gaussian fits of ``real`` and ``fake`` feature vectors (N×D)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features_ND: torch.Tensor, real: bool) -> None:
        if features_ND.ndim != 2 or features_ND.shape[1] != self.dim:
            raise ValueError(f"FrechetDistance expects N×{self.dim} features, got {tuple(features_ND.shape)}")
        side = "real" if real else "fake"
        x = features_ND.detach().double()
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + len(x))
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)

    def compute(self) -> torch.Tensor:
        stats = []
        for side in ("real", "fake"):
            n, s, o = getattr(self, f"{side}_n"), getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer")
            if n < 2:
                raise ValueError(f"FrechetDistance needs >= 2 {side} samples, got {int(n)}")
            mu = s / n
            stats += [mu, (o - n * torch.outer(mu, mu)) / (n - 1)]
        return gaussian_frechet_distance(*stats).float()


class TaskAccuracy(Metric):
    """Accuracy per task and overall; ``compute()`` returns the per-task vector, ``overall()`` the mean."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_tasks: int, **kwargs):
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.add_state("correct", torch.zeros(num_tasks, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_tasks, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_N: torch.Tensor, target_N: torch.Tensor, task_ids_N: torch.Tensor) -> None:
        correct, total = task_correct_counts(pred_N, target_N, task_ids_N, self.num_tasks)
        self.correct += correct.to(self.correct.device)
        self.total += total.to(self.total.device)

    def compute(self) -> torch.Tensor:
        per_task = self.correct / self.total.clamp_min(1)
        per_task[self.total == 0] = float("nan")
        return per_task

    def overall(self) -> float:
        return (self.correct.sum() / self.total.sum().clamp_min(1)).item()
