"""InterfaceGAN reimplementation: boundary recovery, projection, traversal, scoring, errors."""

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.interfacegan import (
    linear_interpolate,
    project_boundary,
    score_latents,
    train_boundary,
)
from lightning_modules.nets.generators import GeneratorAdapter


def planted(n: int = 4000, dim: int = 16, seed: int = 0):
    """Latents N(0, I) whose score is a noisy projection on a hidden unit direction."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    z = rng.normal(size=(n, dim)).astype(np.float32)
    scores = z @ direction + 0.05 * rng.normal(size=n)
    return z, scores, direction


def test_svm_recovers_planted_direction():
    z, scores, direction = planted()
    boundary, stats = train_boundary(z, scores, ratio=0.05, split=0.7, seed=0)
    assert boundary.shape == (16,) and boundary.dtype == np.float32
    assert abs(np.linalg.norm(boundary) - 1.0) < 1e-6
    assert boundary @ direction > 0.99  # points towards higher scores
    assert stats["val_acc"] == 1.0 and stats["train_acc"] == 1.0
    assert (stats["n_pos"], stats["n_neg"], stats["n_train"], stats["n_val"]) == (200, 200, 280, 120)
    assert stats["pos_min_score"] > stats["neg_max_score"]
    # torch inputs and InterfaceGAN's N×1 score layout give the same boundary
    again, _ = train_boundary(torch.from_numpy(z), scores[:, None], ratio=0.05, seed=0)
    np.testing.assert_allclose(again, boundary, atol=1e-6)


def test_seeded_determinism_and_seed_dependence():
    z, scores, _ = planted(n=1000, seed=1)
    scores = scores + 2.0 * np.random.default_rng(5).normal(size=len(scores))  # overlap: the split matters
    a, sa = train_boundary(z, scores, ratio=0.1, seed=3)
    b, sb = train_boundary(z, scores, ratio=0.1, seed=3)
    c, _ = train_boundary(z, scores, ratio=0.1, seed=4)
    np.testing.assert_array_equal(a, b)
    assert sa == sb
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("latents", "scores", "kwargs", "match"),
    [
        (np.zeros((10, 4, 1)), np.zeros(10), {},
         r"`latents_NL` should have shape \[num_samples, latent_dim\], got \[10, 4, 1\]"),
        (np.zeros((10, 4)), np.zeros(9), {}, r"`scores_N` should have shape \[10\] or \[10, 1\].*got \[9\]"),
        (np.zeros((10, 4)), np.zeros((10, 2)), {}, r"got \[10, 2\]"),
        ([[0.0] * 4] * 10, np.zeros(10), {}, "numpy array or torch tensor"),
        (np.zeros((10, 4)), np.full(10, np.nan), {}, "finite"),
        (np.zeros((100, 4)), np.arange(100.0), {"ratio": 0.6}, "0 < ratio <= 0.5"),
        (np.zeros((100, 4)), np.arange(100.0), {"split": 1.0}, "0 < split < 1"),
        (np.zeros((100, 4)), np.arange(100.0), {"ratio": 0.01}, "1 per class and 0 for training"),
    ],
)
def test_train_boundary_errors(latents, scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_boundary(latents, scores, **kwargs)


def test_project_boundary_orthogonal_to_one_and_two_conditions():
    rng = np.random.default_rng(0)
    primal, c1, c2 = rng.normal(size=(3, 32))
    one = project_boundary(primal, c1)
    two = project_boundary(primal[None, :], c1 / np.linalg.norm(c1), c2[None, :])  # 1×L works too
    for out in (one, two):
        assert abs(np.linalg.norm(out) - 1.0) < 1e-6
    assert abs(one @ c1) / np.linalg.norm(c1) < 1e-6
    assert max(abs(two @ c1) / np.linalg.norm(c1), abs(two @ c2) / np.linalg.norm(c2)) < 1e-6
    # InterfaceGAN's closed form for one unit condition
    u = c1 / np.linalg.norm(c1)
    p = primal / np.linalg.norm(primal)
    ref = p - (p @ u) * u
    np.testing.assert_allclose(one, ref / np.linalg.norm(ref), atol=1e-6)
    assert one @ p > 0  # still points the primal's way
    np.testing.assert_allclose(project_boundary(primal), p, atol=1e-6)


def test_project_boundary_errors():
    primal, cond = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="linearly dependent"):
        project_boundary(primal, cond, 2 * cond)
    with pytest.raises(ValueError, match="span of the conditions"):
        project_boundary(cond, 3 * cond)
    with pytest.raises(ValueError, match=r"shape \[3\] or \[1, 3\], got \[4\]"):
        project_boundary(primal, np.ones(4))
    with pytest.raises(ValueError, match="non-zero"):
        project_boundary(np.zeros(3))


def test_linear_interpolate_distances_are_exact():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 12)).astype(np.float32)
    n = rng.normal(size=12)
    traj = linear_interpolate(z, 2.5 * n, start=-3.0, end=3.0, steps=7)  # boundary normalised inside
    unit = n / np.linalg.norm(n)
    assert traj.shape == (5, 7, 12) and traj.dtype == np.float32
    np.testing.assert_allclose(traj @ unit, np.tile(np.linspace(-3, 3, 7), (5, 1)), atol=1e-5)
    # only the component along the boundary moves
    residual = traj - (traj @ unit)[..., None] * unit
    base_residual = z - (z @ unit)[:, None] * unit
    np.testing.assert_allclose(residual, np.repeat(base_residual[:, None], 7, axis=1), atol=1e-5)
    one = linear_interpolate(z, n, start=1.5, end=1.5, steps=1)
    np.testing.assert_allclose(one[:, 0] @ unit, np.full(5, 1.5), atol=1e-5)


def test_linear_interpolate_errors():
    with pytest.raises(ValueError, match=r"shape \[12\] or \[1, 12\], got \[2, 12\]"):
        linear_interpolate(np.zeros((3, 12)), np.ones((2, 12)))
    with pytest.raises(ValueError, match=r"\[num_samples, latent_dim\]"):
        linear_interpolate(np.zeros(12), np.ones(12))
    with pytest.raises(ValueError, match="steps=0"):
        linear_interpolate(np.zeros((3, 12)), np.ones(12), steps=0)


class MeanPixel(nn.Module):
    def forward(self, img):
        return img.mean(dim=(1, 2, 3))


def test_score_latents_is_batched_seeded_and_feeds_train_boundary():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 3 * 4 * 4), nn.Tanh(), nn.Unflatten(1, (3, 4, 4)))
    gen = GeneratorAdapter(net, latent_dim=6)
    z, s = score_latents(gen, MeanPixel(), n=300, batch_size=64, seed=7)
    z2, s2 = score_latents(gen, MeanPixel(), n=300, batch_size=300, seed=7)
    assert z.shape == (300, 6) and s.shape == (300,)
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(s, s2, rtol=1e-5, atol=1e-6)  # batch size does not change scores
    torch.testing.assert_close(s, gen(z).mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-6)
    assert not torch.equal(z, score_latents(gen, MeanPixel(), n=300, seed=8)[0])
    boundary, stats = train_boundary(z, s, ratio=0.1, seed=0)
    assert stats["val_acc"] >= 0.8  # mean pixel is close to linear in z for this tiny net
    with pytest.raises(ValueError, match="one score per image"):
        score_latents(gen, lambda img: img.flatten(1), n=4)
