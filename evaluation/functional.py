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
