"""Issue 16: bad input refused before anything trains, as one ``error:`` line naming the key or file.

Every entry point (``lightning_modules.fit``, ``rl.train``, the three benchmarks) and every config
section: fixed choices, ranges, NaN/inf, zero and negative sizes, output paths (a file in the way, a
read-only folder), YAML syntax, a GPU that is not there; and bad data files (truncated or mislabeled
IDX, undecodable face images, labels outside 0..9), which must name the file. Each case exits 2 with
one line and leaves no file behind (:func:`tests.test_bad_inputs.fails_cleanly`).
"""
import gzip

import numpy as np
import pytest
import torch

from benchmarks.run import main as bench_main
from lightning_modules.fit import main as fit_main
from rl.train import main as rl_main
from tests.conftest import FAST_TRAINER, make_idx_folder, write_idx
from tests.test_bad_inputs import fails_cleanly
from tests.test_faces_data import write_jpeg


@pytest.fixture
def odd_paths(tmp_path):
    """A plain file and a read-only folder, to be named as output folders."""
    afile = tmp_path / "a_file"
    afile.write_text("not a folder")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    yield {"file": afile, "readonly": readonly}
    readonly.chmod(0o755)


@pytest.mark.parametrize(("argv", "expected"), [
    (["autoencoder", "module.lr=nan"], ["module.lr=nan", "finite"]),
    (["autoencoder", "module.lr=inf"], ["module.lr=inf", "finite"]),
    (["autoencoder", "module.code_dim=0"], ["module.code_dim=0", ">= 1"]),
    (["autoencoder", "data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    (["autoencoder", "data.batch_size=-3"], ["data.batch_size=-3", ">= 1"]),
    (["autoencoder", "trainer.max_epochs=-5"], ["trainer.max_epochs=-5", ">= -1"]),
    (["latent_gan", "seed=-1"], ["seed=-1", ">= 0"]),
])
def test_fit_ranges_and_nan_are_refused_at_load(tmp_path, capsys, argv, expected):
    fails_cleanly(fit_main, [*argv, f"out_dir={tmp_path / 'out'}"], tmp_path / "out", *expected, capsys=capsys)


@pytest.mark.parametrize(("argv", "expected"), [
    (["mnist_task", "train.batch_size=0"], ["train.batch_size=0", ">= 1"]),  # was "the whole buffer"
    (["mnist_task", "train.update_per_step=nan"], ["train.update_per_step=nan"]),
    (["mnist_task", "agent.actor_lr=nan"], ["agent.actor_lr=nan", "finite"]),
    (["mnist_task", "agent.hidden_sizes=[0]"], ["hidden_sizes", "0"]),
    (["mnist_task", "train.vector=batchd"], ["train.vector='batchd'", "batched"]),
    (["transform_pg", "env.rewards.distance_weight=nan"], ["distance_weight=nan"]),
])
def test_rl_train_ranges_choices_and_nan_are_refused_at_load(tmp_path, capsys, argv, expected):
    fails_cleanly(rl_main, [*argv, f"out_dir={tmp_path / 'out'}"], tmp_path / "out", *expected, capsys=capsys)


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_fit_and_rl_train_refuse_an_unusable_out_dir(odd_paths, tmp_path, capsys, kind):
    bad = odd_paths[kind]
    for main, name in ((fit_main, "autoencoder"), (rl_main, "mnist_task")):
        line = fails_cleanly(main, [name, f"out_dir={bad}"], tmp_path / "none", "out_dir", str(bad), capsys=capsys)
        assert ("is a file" if kind == "file" else "read-only") in line
    assert not any(odd_paths["readonly"].iterdir())


BENCH = {  # each benchmark with output folders in tmp and no stage given: a missed check would train
    "mnist-task": ["--experiment", "mnist-task"],
    "transformations": ["--experiment", "transformations"],
    "interfacegan": ["--compare", "interfacegan"],
}


@pytest.mark.parametrize(("bench", "overrides", "expected"), [
    ("mnist-task", ["agents=unoin"], ["agents='unoin'", "per_task_set"]),
    ("mnist-task", ["eval.max_digits=-5"], ["eval.max_digits=-5", ">= 1"]),
    ("mnist-task", ["eval.max_digits=0"], ["eval.max_digits=0", ">= 1"]),
    ("mnist-task", ["eval.noise_std=nan"], ["eval.noise_std=nan"]),
    ("mnist-task", ["eval.batch_size=0"], ["eval.batch_size=0"]),
    ("mnist-task", ["parallel_agents=0"], ["parallel_agents=0"]),
    ("mnist-task", ["eval.task_sets=['+11']"], ["+11"]),
    ("mnist-task", ["overrides.autoencoder=['module.lr=nan']"], ["module.lr=nan", "autoencoder"]),
    ("mnist-task", ["overrides.agent=['train.batch_size=0']"], ["train.batch_size=0", "agent"]),
    ("transformations", ["eval.max_digits=-5"], ["eval.max_digits=-5", ">= 1"]),
    ("transformations", ["eval.batch_size=0"], ["eval.batch_size=0", ">= 1"]),
    ("transformations", ["objective.distance_weight=nan"], ["objective.distance_weight=nan"]),
    ("transformations", ["goal_class=others"], ["goal_class='others'", "same"]),
    ("interfacegan", ["interfacegan.ratio=0.9"], ["interfacegan.ratio=0.9", "(0, 0.5]"]),
    ("interfacegan", ["interfacegan.ratio=nan"], ["interfacegan.ratio=nan"]),
    ("interfacegan", ["eval.bases=0"], ["eval.bases=0", ">= 1"]),
    ("interfacegan", ["eval.facenet=maybe"], ["eval.facenet='maybe'", "auto"]),
])
def test_benchmark_values_are_refused_before_any_stage_trains(tmp_path, capsys, bench, overrides, expected):
    out = tmp_path / "out"
    argv = [*BENCH[bench], f"runs_dir={out / 'runs'}", f"results_dir={out / 'results'}", *overrides]
    fails_cleanly(bench_main, argv, out, *expected, capsys=capsys)


@pytest.mark.parametrize("bench", sorted(BENCH))
@pytest.mark.parametrize(("key", "kind"), [("runs_dir", "file"), ("results_dir", "file"), ("runs_dir", "readonly"),
                                           ("results_dir", "readonly")])
def test_benchmarks_refuse_unusable_output_folders(odd_paths, tmp_path, capsys, bench, key, kind):
    out = tmp_path / "out"
    paths = {"runs_dir": out / "runs", "results_dir": out / "results", key: odd_paths[kind]}
    argv = [*BENCH[bench], *(f"{k}={v}" for k, v in paths.items())]
    fails_cleanly(bench_main, argv, out, key, str(odd_paths[kind]), capsys=capsys)


def test_mnist_benchmark_checks_export_and_test_root_first(odd_paths, tmp_path, capsys):
    out = tmp_path / "out"
    base = [*BENCH["mnist-task"], f"runs_dir={out / 'runs'}", f"results_dir={out / 'results'}"]
    export = odd_paths["file"] / "x.npz"  # a file where its folder should be: failed after training before
    fails_cleanly(bench_main, [*base, f"eval.export={export}"], out, "eval.export", str(export), capsys=capsys)
    fails_cleanly(bench_main, [*base, f"eval.export={tmp_path}"], out, "eval.export", "is a folder", capsys=capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    fails_cleanly(bench_main, [*base, f"eval.test_root={empty}"], out, "eval.test_root", str(empty), capsys=capsys)


def test_yaml_syntax_error_names_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("module: {name: autoencoder\n  lr: [0.1\n")
    for main in (fit_main, rl_main):
        fails_cleanly(main, [str(bad), f"out_dir={tmp_path / 'out'}"], tmp_path / "out", str(bad), "YAML",
                      capsys=capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu_is_one_line(idx_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["autoencoder", *FAST_TRAINER, "trainer.accelerator=gpu", "data.source=idx", f"data.root={idx_dir}",
            f"out_dir={out}"]
    line = fails_cleanly(fit_main, argv, out, "trainer.accelerator=gpu", capsys=capsys)
    assert "fast_dev_run" not in line and "precision" not in line  # the keys set away from their defaults, not the whole section


def _fit_on_idx(folder, out):
    return ["autoencoder", *FAST_TRAINER, "data.source=idx", f"data.root={folder}", "data.batch_size=16",
            f"out_dir={out}"]


@pytest.mark.parametrize("fault", ["truncated_gz", "raw_named_gz", "labels_out_of_range", "short_body"])
def test_bad_idx_files_name_the_file(tmp_path, capsys, fault):
    folder = make_idx_folder(tmp_path / "idx", n_train=32, n_test=16)
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if fault == "truncated_gz":  # a download cut off
        images.write_bytes(images.read_bytes()[:-200])
        bad, text = images, "gzip"
    elif fault == "raw_named_gz":  # an uncompressed file named .gz
        images.write_bytes(gzip.decompress(images.read_bytes()))
        bad, text = images, "gzip"
    elif fault == "labels_out_of_range":
        write_idx(labels, np.arange(32) % 12)
        bad, text = labels, "0..9"
    else:  # a header promising more images than the body holds
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-28 * 28 * 3]))
        bad, text = images, "truncated"
    out = tmp_path / "out"
    fails_cleanly(fit_main, _fit_on_idx(folder, out), out, str(bad), text, capsys=capsys)


@pytest.mark.parametrize("fault", ["not_an_image", "truncated_jpeg"])
def test_undecodable_utkface_images_name_the_file(tmp_path, capsys, fault):
    folder = tmp_path / "utk"
    folder.mkdir()
    for i in range(12):
        write_jpeg(folder / f"{10 + 5 * i}_{i % 2}_0_2017010915055{i:04d}.jpg", seed=i)
    bad = folder / "30_1_0_20170109150557335.jpg"
    if fault == "not_an_image":
        bad.write_text("this is a text file named like a face")
    else:
        write_jpeg(bad, size=64, seed=99)
        bad.write_bytes(bad.read_bytes()[:400])
    out = tmp_path / "out"
    argv = ["age_regressor", f"data.root={folder}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu", f"out_dir={out}"]
    fails_cleanly(fit_main, argv, out, str(bad), "cannot be decoded", capsys=capsys)
