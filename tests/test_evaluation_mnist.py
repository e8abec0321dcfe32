"""Experiment-B evaluation: metrics vs numpy, and the protocol on a hand-built world with a known answer."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from evaluation.functional import task_accuracy
from evaluation.metrics import TaskAccuracy
from evaluation.mnist_task import (
    evaluate_translation,
    export_npz,
    sample_quality,
    translation_grid,
)
from rl.envs.mnist_task import MnistTaskCore
from rl.tasks import TaskSet


def numpy_task_accuracy(pred, target, tasks, num_tasks):
    return np.array([(pred[tasks == t] == target[tasks == t]).mean() if (tasks == t).any() else np.nan
                     for t in range(num_tasks)])


def test_task_accuracy_matches_numpy_and_accumulates():
    rng = np.random.default_rng(0)
    pred, target, tasks = rng.integers(0, 10, 500), rng.integers(0, 10, 500), rng.integers(0, 4, 500)
    per_task, overall = task_accuracy(torch.tensor(pred), torch.tensor(target), torch.tensor(tasks), 5)
    ref = numpy_task_accuracy(pred, target, tasks, 5)
    np.testing.assert_allclose(per_task.numpy(), ref)  # task 4 has no sample: NaN on both sides
    assert overall == pytest.approx((pred == target).mean())
    metric = TaskAccuracy(5)
    for chunk in np.array_split(np.arange(500), 7):
        metric.update(torch.tensor(pred[chunk]), torch.tensor(target[chunk]), torch.tensor(tasks[chunk]))
    np.testing.assert_allclose(metric.compute().numpy(), ref)
    assert metric.overall() == pytest.approx(overall)


def test_task_accuracy_errors():
    with pytest.raises(ValueError, match=r"task ids must lie in 0..2, got 0..3"):
        task_accuracy(torch.zeros(4), torch.zeros(4), torch.arange(4), 3)
    with pytest.raises(ValueError, match="must be N-vectors"):
        TaskAccuracy(3).update(torch.zeros(4), torch.zeros(5), torch.zeros(4, dtype=torch.long))


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def toy_world(tasks="add:0-9"):
    """Digits carry their label as a bright pixel; z's 10 values are written into the image's first
    row, and the judge reads them back as logits: the right z makes any digit."""
    decoder = Lambda(lambda code: F.pad(code, (0, 784 - 10)).view(-1, 1, 28, 28))
    reader = Lambda(lambda img: img.flatten(1)[:, :10])
    core = MnistTaskCore(torch.eye(10), torch.arange(10), Lambda(lambda z: z), decoder, reader,
                         Lambda(lambda code: code.sum(1)), TaskSet.parse(tasks), z_dim=10)
    labels = torch.arange(30) % 10
    images = torch.zeros(30, 1, 28, 28)
    images.view(30, -1)[torch.arange(30), 100 + labels] = 1.0
    encoder = Lambda(lambda img: img.flatten(1)[:, 100:110])  # code = one-hot label
    return core, encoder, reader, images, labels


def oracle(obs):
    """Reads label and (op, operand) from the observation and asks for the right digit."""
    label, op, operand = obs[:, :10].argmax(1), obs[:, 10:13].argmax(1), obs[:, 13:23].argmax(1)
    target = torch.where(op == 0, label + operand, torch.where(op == 1, label - operand, label * operand)) % 10
    return 3.0 * F.one_hot(target, 10).float()


@pytest.mark.parametrize("tasks", ["add:0-9", "sub:0-9", "mul:0-9"])
def test_oracle_policy_scores_one_and_constant_policy_chance(tasks):
    core, encoder, judge, images, labels = toy_world(tasks)
    perfect = evaluate_translation(oracle, core, encoder, judge, images, labels, batch_size=7)
    assert perfect.judge_acc == 1.0 and perfect.reward_acc == 1.0 and perfect.judge_acc_per_task == [1.0] * 10
    constant = evaluate_translation(lambda obs: 3.0 * F.one_hot(torch.zeros(len(obs), dtype=torch.long), 10).float(),
                                    core, encoder, judge, images, labels, batch_size=7)
    targets = core.tasks.targets(labels.repeat_interleave(10), torch.arange(10).repeat(30))
    assert constant.judge_acc == pytest.approx((targets == 0).float().mean().item())
    assert constant.realism == pytest.approx(3.0)  # the toy discriminator sums z


def test_outputs_export_and_grid(tmp_path):
    core, encoder, judge, images, labels = toy_world()
    scores = evaluate_translation(oracle, core, encoder, judge, images, labels, keep_outputs=True)
    export_npz(scores.outputs, tmp_path / "out.npz")
    data = np.load(tmp_path / "out.npz")
    assert data["images"].shape == (300, 28, 28) and data["images"].dtype == np.float32
    assert (data["targets"] == (data["labels"] + data["task_ids"]) % 10).all()
    translation_grid(oracle, core, encoder, images[:4], tmp_path / "grid.png")
    width, height = Image.open(tmp_path / "grid.png").size
    assert (width, height) == (11 * 30 + 2, 4 * 30 + 2)  # 1 input + 10 task columns, 4 rows, 2-px padding


def test_noise_reaches_the_encoder():
    core, encoder, judge, images, labels = toy_world()
    clean = evaluate_translation(oracle, core, encoder, judge, images, labels, noise_std=0.0)
    noisy = evaluate_translation(oracle, core, encoder, judge, images, labels, noise_std=0.8, seed=1)
    assert noisy.judge_acc < clean.judge_acc


def test_sample_quality_histogram():
    core, _, judge, _, _ = toy_world()
    quality = sample_quality(core, judge, n=400)
    assert sum(quality["class_hist"]) == pytest.approx(1.0)
    assert 0.0 <= quality["frac_confident"] <= 1.0
    assert sum(quality["coverage_share"]) == pytest.approx(quality["frac_confident"])


def test_generator_coverage_tells_a_judge_that_agrees_from_one_that_does_not():
    core, _, judge, _, _ = toy_world()  # here the judge reads the image as the reward classifier does
    agrees = sample_quality(core, judge, n=400, threshold=0.5)
    shifted = Lambda(lambda img: judge(img).roll(1, dims=1))  # calls every digit c what the reward calls c-1
    disagrees = sample_quality(core, shifted, n=400, threshold=0.5)
    assert min(agrees["coverage_best_judged_p"]) > 0.35  # about e^2.7 / (e^2.7 + 9 e^0.5) at z_c ≈ 2.7
    assert max(disagrees["coverage_best_judged_p"]) < 0.15
    assert agrees["coverage_share"] == pytest.approx(np.roll(disagrees["coverage_share"], -1).tolist())


def _cluster_core(labels_N: torch.Tensor, gen: torch.Generator, spread: float) -> tuple[MnistTaskCore, torch.Tensor]:
    # codes = a per-label centre + noise; everything else is a stub (the probe reads only the pool)
    centres = torch.randn(10, 16, generator=gen) * 3.0
    codes = centres[labels_N] + spread * torch.randn(len(labels_N), 16, generator=gen)
    core = MnistTaskCore(codes, labels_N, Lambda(lambda z: torch.zeros(len(z), 16)),
                         Lambda(lambda c: torch.zeros(len(c), 1, 28, 28)), Lambda(lambda x: torch.zeros(len(x), 10)),
                         Lambda(lambda c: torch.zeros(len(c))), TaskSet.parse(["add:0-9"]), z_dim=2)
    return core, centres


def test_recognition_ceiling_reads_separable_codes_and_not_random_labels():
    from evaluation.mnist_task import recognition_ceiling

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(600) % 10
    core, centres = _cluster_core(labels, gen, spread=0.3)
    test_labels = torch.arange(200) % 10
    clean = centres[test_labels] + 0.3 * torch.randn(200, 16, generator=gen)
    noisy = clean + 10.0 * torch.randn(200, 16, generator=gen)  # noise far above the centres' spacing
    acc = recognition_ceiling(core, {"clean": clean, "noisy": noisy}, test_labels, hidden_sizes=(32,), steps=300)
    assert acc["clean"] > 0.97
    assert acc["noisy"] < 0.6
    # labels unrelated to the codes: the probe can only guess on held-out codes
    shuffled = labels[torch.randperm(600, generator=gen)]
    core_rand = MnistTaskCore(core.codes_ND, shuffled, **core.nets, tasks=core.tasks, z_dim=2)
    assert recognition_ceiling(core_rand, {"clean": clean}, test_labels, hidden_sizes=(32,), steps=300)["clean"] < 0.3


def test_pipeline_ceiling_learns_the_oracle_by_gradient_on_a_differentiable_world():
    from evaluation.mnist_task import pipeline_ceiling

    core, encoder, judge, images, labels = toy_world()  # the right z writes the target's logit into the image
    untrained = evaluate_translation(pipeline_ceiling(core, steps=0), core, encoder, judge, images, labels)
    trained = evaluate_translation(pipeline_ceiling(core, steps=1000, hidden_sizes=(64,)), core, encoder, judge,
                                   images, labels)
    assert untrained.judge_acc < 0.3 and trained.judge_acc > 0.9
