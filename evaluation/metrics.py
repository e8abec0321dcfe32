"""torchmetrics classes over ``evaluation.functional`` (sum states only: they reduce across devices)."""
import torch
from torchmetrics import Metric

from evaluation.functional import gaussian_frechet_distance


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
