"""--compare interfacegan's outputs for outside readers: the reward-model/judge age agreement and the .npz export."""
import numpy as np
import pytest
import torch

from benchmarks.interfacegan_judging import age_agreement, export_judged


def test_age_agreement_is_the_correlation_of_reward_and_judge_ages_and_changes():
    base = {"age": torch.tensor([20.0, 30.0, 40.0]), "reward_age": torch.tensor([21.0, 32.0, 43.0])}
    traj = {"age": torch.tensor([[25.0, 30.0], [28.0, 26.0], [50.0, 50.0]])}
    valid, direction = torch.tensor([[True, True], [True, True], [True, False]]), torch.tensor([0, 1, 0])
    same = age_agreement(base, {**traj, "reward_age": traj["age"] * 1.1 + 1.0}, valid, direction)
    assert same["age_corr_images"] < 1.0  # the base ages are not on the same line
    affine_base = {**base, "reward_age": base["age"] * 2 + 3}
    exact = age_agreement(affine_base, {**traj, "reward_age": traj["age"] * 2 + 3}, valid, direction)
    assert exact["age_corr_images"] == pytest.approx(1.0) and exact["age_corr_changes"] == pytest.approx(1.0)
    # the reward model sees the opposite edit: changes anti-correlated
    flipped = age_agreement(base, {**traj, "reward_age": 2 * base["reward_age"][:, None] - traj["age"]}, valid,
                            direction)
    # last step − base, signed by the command (row 1 goes younger; row 2 ended at its first step):
    # judge +10, +4, +10; reward model 42-30-21 = -9, -(64-26-32) = -6, 86-50-43 = -7
    expected = np.corrcoef([10.0, 4.0, 10.0], [-9.0, -6.0, -7.0])[0, 1]
    assert flipped["age_corr_changes"] == pytest.approx(expected) and expected < -0.7
    x, y = base["age"].numpy(), base["reward_age"].numpy()
    assert same["age_corr_images"] == pytest.approx(np.corrcoef(
        np.concatenate([y, (traj["age"] * 1.1 + 1.0)[valid].numpy()]),
        np.concatenate([x, traj["age"][valid].numpy()]))[0, 1], abs=1e-6)


def test_export_holds_every_judged_image_with_its_base_method_step_and_direction(tmp_path):
    def generator(z):  # latent -> a 3×64×64 image in [-1, 1] that encodes the latent's first value
        return torch.tanh(z[:, :1, None, None]).expand(-1, 3, 64, 64)

    base_z = torch.tensor([[0.1, 0.0], [0.2, 0.0]])
    base_idx, direction = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    z = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2) / 100
    valid = torch.tensor([[True] * 3, [True] * 3, [True, False, False], [True, True, False]])
    full = torch.ones(4, 3, dtype=torch.bool)
    n = export_judged(tmp_path / "faces.npz", generator, base_z, base_idx, direction,
                      {"rl_seed0": (z, valid), "interfacegan_plain_3": (z + 1, full)}, batch_size=5)
    out = np.load(tmp_path / "faces.npz")
    assert n == 2 + 9 + 12 and out["images"].shape == (n, 3, 64, 64) and out["images"].dtype == np.float32
    assert list(out["method"][:3]) == ["base", "base", "rl_seed0"] and list(out["base_index"][:2]) == [-1, -1]
    rl = out["method"] == "rl_seed0"
    assert rl.sum() == 9 and sorted(out["step"][rl & (out["base_index"] == 0) & (out["direction"] == "younger")]) == [1]
    assert set(out["direction"][out["method"] == "base"]) == {""} and set(out["step"][:2]) == {0}
    row = np.flatnonzero(rl & (out["base_index"] == 1) & (out["step"] == 2) & (out["direction"] == "younger"))
    assert len(row) == 1 and out["images"][row[0], 0, 0, 0] == pytest.approx(np.tanh(z[3, 1, 0].item()))
    assert out["images"][1, 2, 5, 5] == pytest.approx(np.tanh(0.2))  # the second base image
    assert not list(tmp_path.glob(".*tmp"))  # written atomically
