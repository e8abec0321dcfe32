"""Issue 7: every bad input named there, through the entry points' own ``main``.

Each case must exit 2 with one ``error: ...`` line naming the value and what was expected, and
leave nothing in the output folder. (Shape and NaN checks deep inside the envs and adapters,
which no config can reach, are tested where they live: test_rl_mnist_env, test_face_age_env,
test_generators.)
"""
import numpy as np
import pytest
import torch

from benchmarks.run import main as bench_main
from lightning_modules.fit import main as fit_main
from lightning_modules.nets.generators import build_generator
from rl.train import main as rl_main
from tests.test_faces_data import write_jpeg, write_mat


def fails_cleanly(main, argv, out_dir, *expected, capsys):
    """Run an entry point, check: exit 2, one stderr line holding every ``expected`` text, no files left."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for text in expected:
        assert text in err[0], (text, err[0])
    left = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else []
    assert not left, left
    return err[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["autoencoder", "trainer.max_epoch=1"], ["trainer.max_epoch", "max_epochs"]),   # unknown key
    (["autoencodr"], ["unknown experiment 'autoencodr'", "autoencoder"]),             # unknown experiment
    (["autoencoder", "trainer.max_epochs=many"], ["max_epochs", "many"]),            # wrong type
    (["autoencoder", "seed=1.5"], ["seed", "1.5"]),
])
def test_fit_config_errors(tmp_path, capsys, argv, expected):
    fails_cleanly(fit_main, [*argv, f"out_dir={tmp_path / 'out'}"], tmp_path / "out", *expected, capsys=capsys)


@pytest.mark.parametrize(("argv", "expected"), [
    (["mnist_tsk"], ["unknown experiment 'mnist_tsk'", "mnist_task"]),
    (["mnist_task", "train.num_envs=lots"], ["train.num_envs", "lots"]),
    (["mnist_task", "env.tasks=[]"], ["task set", "empty"]),
    (["mnist_task", "env.augment_copies=-1"], ["augment_copies=-1", "int >= 0"]),
    (["mnist_task", "env.noisy_copies=1.5"], ["env.noisy_copies", "1.5", "Integer"]),
    (["age_ppo", "env.mdp.p1=5", "env.mdp.p2=5"], ["p1=5", "p2=5", "P1 < P2"]),
    (["age_ppo", "env.mdp.p1=6", "env.mdp.p2=5"], ["p1=6", "p2=5", "P1 < P2"]),
    (["age_ppo", "env.mdp.inertia=1.0"], ["inertia=1.0", "[0, 1)"]),
    (["age_ppo", "env.mdp.inertia=-0.1"], ["inertia=-0.1", "[0, 1)"]),
    (["age_ppo", "env.mdp.epsilon=-1"], ["epsilon=-1", "ε > 0"]),
    (["age_ppo", "env.mdp.bucket_width=-5"], ["bucket_width=-5", "β > 0"]),
    (["age_ppo", "env.mdp.bucket_width=0"], ["bucket_width=0", "β > 0"]),
])
def test_rl_train_config_errors(tmp_path, capsys, argv, expected):
    # the face env checks its MDP values before loading any model: no checkpoint is needed here
    fails_cleanly(rl_main, [*argv, f"out_dir={tmp_path / 'out'}"], tmp_path / "out", *expected, capsys=capsys)


def test_benchmark_unknown_experiment_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--experiment", "nosuch"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_missing_corrupt_and_wrong_kind_checkpoints(mnist_stage_runs, tmp_path, capsys):
    runs, out = mnist_stage_runs, tmp_path / "out"
    stages = [f"env.gan_checkpoint={runs['latent_gan']}", f"env.classifier_checkpoint={runs['classifier']}",
              "env.source=idx", f"env.root={runs['idx']}", f"out_dir={out}"]
    missing = tmp_path / "nothing_here.ckpt"
    fails_cleanly(rl_main, ["mnist_task", f"env.ae_checkpoint={missing}", *stages], out,
                  str(missing), "does not exist", capsys=capsys)
    corrupt = tmp_path / "corrupt.ckpt"
    good = (runs["autoencoder"] / "checkpoints" / "best.ckpt").read_bytes()
    corrupt.write_bytes(good[: len(good) // 2])  # a checkpoint cut off mid-write by a crash
    fails_cleanly(rl_main, ["mnist_task", f"env.ae_checkpoint={corrupt}", *stages], out,
                  str(corrupt), "could not be read", capsys=capsys)
    fails_cleanly(rl_main, ["mnist_task", f"env.ae_checkpoint={runs['classifier']}", *stages], out,
                  "holds a 'classifier' module, expected 'autoencoder'", capsys=capsys)
    # the same checks guard fit's own inputs
    fails_cleanly(fit_main, ["latent_gan", f"ae_checkpoint={runs['judge']}", f"out_dir={out}"], out,
                  "holds a 'classifier' module, expected 'autoencoder'", capsys=capsys)


def test_face_data_errors(tmp_path, capsys):
    out = tmp_path / "out"
    fast = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"out_dir={out}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a face")
    fails_cleanly(fit_main, ["age_regressor", f"data.root={empty}", *fast], out,
                  "no usable UTKFace images", str(empty), capsys=capsys)
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    write_jpeg(malformed / "age_gender_race_date.jpg")  # not <age>_<gender>_<race>_<date>.jpg
    write_jpeg(malformed / "25_3_0_20170109150557335.jpg")  # gender 3 does not exist
    fails_cleanly(fit_main, ["age_regressor", f"data.root={malformed}", *fast], out,
                  "no usable UTKFace images", "2 malformed", capsys=capsys)
    mat = tmp_path / "imdb.mat"
    write_mat(mat, drop=("face_score",))
    fails_cleanly(fit_main, ["age_regressor", "data.name=imdb_wiki", f"data.mat_path={mat}", *fast], out,
                  "face_score", capsys=capsys)


def test_generator_with_the_wrong_output_shape_is_refused():
    flat = torch.nn.Sequential(torch.nn.Linear(8, 3 * 16 * 16))  # forgets to reshape to images
    with pytest.raises(ValueError, match=r"generator output: expected"):
        build_generator("module", net=flat, latent_dim=8)
    assert np.isfinite(build_generator("module", net=torch.nn.Sequential(
        torch.nn.Linear(8, 3 * 16 * 16), torch.nn.Unflatten(1, (3, 16, 16))), latent_dim=8)(torch.zeros(2, 8))).all()
