"""Experiment A metrics vs numpy references, chunked == one-shot, hand-made flip/bucket cases."""
import numpy as np
import pytest
import torch

from evaluation.face_metrics import (
    GenderFlipRate,
    IdentityCosine,
    age_change,
    buckets_covered,
    cosine_summary,
    flip_curve,
    flip_noise_floor,
    gender_flip_rate,
    identity_cosines,
)


def _np_cosines(base, traj):
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    t = traj / np.linalg.norm(traj, axis=2, keepdims=True)
    return np.einsum("nf,ntf->nt", b, t)


def _embeddings(n=7, t=5, f=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, f, generator=g, dtype=torch.float64)
    traj = base[:, None, :] + 0.8 * torch.randn(n, t, f, generator=g, dtype=torch.float64)
    return base, traj


def test_identity_cosines_match_numpy():
    base, traj = _embeddings()
    cos = identity_cosines(base, traj)
    assert cos.shape == (7, 5)
    np.testing.assert_allclose(cos.numpy(), _np_cosines(base.numpy(), traj.numpy()), atol=1e-12)
    same = identity_cosines(base, base[:, None, :].repeat(1, 3, 1) * 2.5)  # scale does not matter
    np.testing.assert_allclose(same.numpy(), 1.0, atol=1e-12)


def test_identity_cosines_shape_errors():
    with pytest.raises(ValueError, match=r"N×F.*N×T×F.*\(3, 4\).*\(2, 5, 4\)"):
        identity_cosines(torch.zeros(3, 4), torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"\(3, 5, 8\)"):
        identity_cosines(torch.zeros(3, 4), torch.zeros(3, 5, 8))


def test_identity_cosine_metric_chunked_equals_one_shot_and_numpy():
    base, traj = _embeddings(n=9, t=4)
    ref = _np_cosines(base.numpy(), traj.numpy())
    one, chunked = IdentityCosine(), IdentityCosine()
    one.update(base, traj)
    for sl in (slice(0, 2), slice(2, 3), slice(3, 9)):
        chunked.update(base[sl], traj[sl])
    expected = {"Mean": ref.mean(), "Std": ref.std(), "Min": ref.min(), "Max": ref.max()}
    for metric in (one, chunked):
        out = metric.compute()
        assert set(out) == set(expected)
        for key, value in expected.items():
            assert out[key].item() == pytest.approx(value, abs=1e-10), key
    assert cosine_summary(torch.from_numpy(ref)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_identity_cosine_metric_empty_and_reset():
    metric = IdentityCosine()
    with pytest.raises(ValueError, match="before any"):
        metric.compute()
    base, traj = _embeddings(n=2, t=2)
    metric.update(base, traj)
    metric.reset()
    assert metric.count == 0 and metric.min_val == float("inf")


# p_female: base [male, female, male, male]; threshold 0.5 (p == 0.5 counts as female)
BASE = torch.tensor([0.1, 0.9, 0.4, 0.2])
TRAJ = torch.tensor([[0.2, 0.3, 0.1],    # never flips
                     [0.8, 0.3, 0.7],    # flips at step 1 only
                     [0.45, 0.5, 0.2],   # p == threshold at step 1 -> female: flip
                     [0.3, 0.35, 0.49]])  # never crosses


def test_gender_flip_rate_hand_made():
    assert gender_flip_rate(BASE, TRAJ) == pytest.approx(0.5)
    # at 0.55 the 0.5 of row 2 stays male: only row 1 flips
    assert gender_flip_rate(BASE, TRAJ, threshold=0.55) == pytest.approx(0.25)
    # at 0.25 the bases 0.1 and 0.2 are male and reach 0.3; the 0.4 base is female and reaches 0.2
    assert gender_flip_rate(BASE, TRAJ, threshold=0.25) == pytest.approx(0.75)
    np.testing.assert_allclose(flip_curve(BASE, TRAJ).numpy(), [0.0, 0.5, 0.0])
    np.testing.assert_allclose(flip_curve(BASE, TRAJ, cumulative=True).numpy(), [0.0, 0.5, 0.5])
    assert gender_flip_rate(BASE, BASE[:, None].repeat(1, 4)) == 0.0


def test_gender_flip_metric_chunked_and_curve():
    one, chunked = GenderFlipRate(num_steps=3), GenderFlipRate(num_steps=3)
    one.update(BASE, TRAJ)
    chunked.update(BASE[:1], TRAJ[:1])
    chunked.update(BASE[1:], TRAJ[1:])
    for metric in (one, chunked):
        assert metric.compute().item() == pytest.approx(0.5)
        np.testing.assert_allclose(metric.curve().numpy(), [0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="num_steps=3.*2 steps"):
        one.update(BASE, TRAJ[:, :2])
    with pytest.raises(ValueError, match="needs num_steps"):
        GenderFlipRate().curve()


def test_gender_flip_errors():
    with pytest.raises(ValueError, match=r"p_female N.*\(4,\).*\(3, 3\)"):
        gender_flip_rate(BASE, TRAJ[:3])
    with pytest.raises(ValueError, match="threshold"):
        gender_flip_rate(BASE, TRAJ, threshold=1.0)


def test_age_change_signs():
    base = torch.tensor([30.0, 30.0, 40.0])
    traj = torch.tensor([[31.0, 38.0], [29.0, 25.0], [45.0, 44.0]])
    direction = torch.tensor([0, 1, 1])  # older, younger, younger
    np.testing.assert_allclose(age_change(base, traj, direction).numpy(), [8.0, 5.0, -4.0])
    with pytest.raises(ValueError, match="0 \\(older\\) or 1 \\(younger\\)"):
        age_change(base, traj, torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\(3,\), \(3,\), \(2,\)"):
        age_change(base, traj[:, 0], direction[:2])


def test_buckets_covered_hand_made():
    # width 5 from age 20: base 27 is in bucket [25, 30)
    base = torch.tensor([27.0, 27.0, 27.0, 27.0])
    traj = torch.tensor([[31.0, 33.0, 36.0, 52.0],   # older: 30-35, 35-40, 50-55 -> 3
                         [24.0, 21.0, 18.0, 12.0],   # younger: 20-25 (21, 24) and <20 -> edge bucket 0 (=20-25): 1
                         [31.0, 26.0, 24.0, 41.0],   # older: 30-35, 40-45 -> 2 (24 is the wrong way)
                         [28.0, 29.0, 26.0, 25.0]])  # younger but never leaves the base bucket -> 0
    direction = torch.tensor([0, 1, 0, 1])
    np.testing.assert_array_equal(buckets_covered(base, traj, direction, 5.0, 20.0).numpy(), [3, 1, 2, 0])
    # with age_max=40 every age >= 40 falls in the last bucket [35, 40): 36, 52 share it
    np.testing.assert_array_equal(buckets_covered(base, traj, direction, 5.0, 20.0, age_max=40.0).numpy(), [2, 1, 2, 0])
    with pytest.raises(ValueError, match="bucket_width"):
        buckets_covered(base, traj, direction, 0.0, 20.0)


def test_buckets_covered_equals_env_bucket_hits():
    from rl.envs.face_age import bucket_hits, bucket_index, num_buckets

    g = torch.Generator().manual_seed(3)
    n, t, width, lo, hi = 32, 6, 4.0, 10.0, 70.0
    base = 15 + 40 * torch.rand(n, generator=g)
    traj = base[:, None] + torch.cumsum(4 * torch.randn(n, t, generator=g), 1)
    direction = torch.randint(0, 2, (n,), generator=g)
    n_b = num_buckets(lo, hi, width)
    visited = torch.zeros(n, n_b, dtype=torch.bool)
    visited[torch.arange(n), bucket_index(base, lo, width, n_b)] = True  # the env marks the base bucket at reset
    hits = torch.zeros(n, dtype=torch.long)
    for k in range(t):
        hit, visited = bucket_hits(traj[:, k], base, direction, visited, lo, width)
        hits += hit.long()
    np.testing.assert_array_equal(buckets_covered(base, traj, direction, width, lo, age_max=hi).numpy(), hits.numpy())


def _sign_gender(z):  # "images" = latents; p_female from the first coordinate
    return torch.sigmoid(20 * z[:, 0])


def test_flip_noise_floor_generic():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 8, generator=g)
    ident = lambda x: x  # noqa: E731
    assert flip_noise_floor(ident, _sign_gender, z, step=0.0, steps=5) == 0.0
    small = flip_noise_floor(ident, _sign_gender, z, step=0.05, steps=5, seed=1)
    large = flip_noise_floor(ident, _sign_gender, z, step=1.0, steps=5, seed=1)
    assert 0.0 <= small < large <= 1.0 and large > 0.3
    assert flip_noise_floor(ident, _sign_gender, z, step=1.0, steps=5, seed=1) == large  # seeded
    # walks stay on the base's shell: record the latents the generator sees
    seen = []
    flip_noise_floor(lambda x: seen.append(x) or x, _sign_gender, z, step=0.7, steps=3)
    for zz in seen:
        np.testing.assert_allclose(zz.norm(dim=1).numpy(), z.norm(dim=1).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="N×L"):
        flip_noise_floor(ident, _sign_gender, z[0], step=0.1, steps=2)
