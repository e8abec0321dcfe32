"""Issue 16: resume writes nothing before it is validated, moved or copied runs resume in place, an
unfinished run is never used silently as an input, written files get the umask's mode, mismatched
stages are one line.

The unfinished runs here are copies of the shared tiny stage runs (``mnist_stage_runs``) without their
completion mark, as a kill -9 leaves them (tests/test_kill_and_resume.py kills real processes).
"""
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.run import main as bench_main
from benchmarks.stages import matching_run
from lightning_modules.fit import main as fit_main
from rl.train import main as rl_main
from tests.conftest import FAST_TRAINER, tiny_agent_overrides
from tests.test_bad_inputs import fails_cleanly
from utils.errors import UserError
from utils.runs import resolve_checkpoint, run_info


def snapshot(folder: Path) -> dict:
    """Every file under ``folder``: its bytes and mtime (to show nothing was rewritten)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def unfinished_copy(run: Path, dest: Path, max_epochs=None) -> Path:
    """``run`` copied to ``dest`` without its completion mark; ``max_epochs``: the saved config asks for more
    epochs than its last.ckpt holds (a run killed after its first epoch)."""
    shutil.copytree(run, dest)
    (dest / "test_metrics.json").unlink()
    if max_epochs is not None:
        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        cfg["trainer"]["max_epochs"] = max_epochs
        (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


def fit_args(runs: dict) -> list:
    """The overrides the shared stage runs were trained with (out_dir aside)."""
    return [*FAST_TRAINER, "data.source=idx", f"data.root={runs['idx']}", "data.batch_size=16"]


def test_fit_resume_refuses_another_module_or_config_and_writes_nothing(mnist_stage_runs, tmp_path, capsys):
    run = unfinished_copy(mnist_stage_runs["classifier"], tmp_path / "classifier" / "20260101-000000")
    before = snapshot(run)
    out = tmp_path / "out"
    line = fails_cleanly(fit_main, ["autoencoder", *fit_args(mnist_stage_runs), f"resume={run}", f"out_dir={out}"],
                         out, str(run), "different config", "module", capsys=capsys)
    assert "module.name" in line
    for change in ("seed=5", "module.lr=0.5"):  # compatible changes are refused too, naming the key
        fails_cleanly(fit_main, ["classifier", *fit_args(mnist_stage_runs), change, f"resume={run}",
                                 f"out_dir={out}"], out, change.split("=")[0], "different config", capsys=capsys)
    assert snapshot(run) == before  # config.yaml and checkpoints untouched


@pytest.mark.parametrize("how", ["copy", "move"])
def test_moved_or_copied_run_resumes_in_place_with_its_own_checkpoints(mnist_stage_runs, tmp_path, capsys, how):
    first = unfinished_copy(mnist_stage_runs["autoencoder"], tmp_path / "a" / "autoencoder" / "20260101-000000",
                            max_epochs=2)
    dest = tmp_path / "b" / "autoencoder" / "20260101-000000"
    dest.parent.mkdir(parents=True)
    if how == "copy":
        shutil.copytree(first, dest)
    else:
        first.rename(dest)
    before = snapshot(first) if how == "copy" else {}
    assert fit_main([f"resume={dest}"]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == dest
    names = sorted(p.name for p in (dest / "checkpoints").iterdir())
    assert names == ["best.ckpt", "last.ckpt"], names  # no best-v1.ckpt / last-v1.ckpt beside stale files
    last = torch.load(dest / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 4  # resumed after epoch 0, not started again
    summary = yaml.safe_load((dest / "test_metrics.json").read_text())
    assert Path(summary["checkpoint"]).parent == dest / "checkpoints"
    if how == "copy":
        assert snapshot(first) == before  # the original folder is neither read for checkpoints nor written
    assert snapshot(mnist_stage_runs["autoencoder"])  # the shared run it came from still exists


def test_zero_byte_or_missing_last_ckpt_on_resume_is_one_line(mnist_stage_runs, tmp_path, capsys):
    run = unfinished_copy(mnist_stage_runs["autoencoder"], tmp_path / "autoencoder" / "20260101-000000",
                          max_epochs=2)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    before = snapshot(run)
    out = tmp_path / "out"
    fails_cleanly(fit_main, [f"resume={run}", f"out_dir={out}"], out, str(last), "not a readable checkpoint",
                  capsys=capsys)
    last.unlink()
    fails_cleanly(fit_main, [f"resume={run}", f"out_dir={out}"], out, str(last), "does not exist", capsys=capsys)
    assert snapshot(run).keys() == before.keys() - {last}


def test_rl_resume_of_a_corrupt_train_state_is_one_line(mnist_stage_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert rl_main(["mnist_task", *tiny_agent_overrides(mnist_stage_runs), f"out_dir={out}"]) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    (run / "train_summary.json").unlink()  # as if killed after its last epoch's state
    state = run / "train_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    before = snapshot(run)
    assert rl_main([f"resume={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(state) in err[0] and "not a readable training state" in err[0], err
    assert snapshot(run) == before


def two_autoencoder_runs(runs: dict, folder: Path):
    """``folder`` with a finished autoencoder run and a newer unfinished one (killed mid-fit)."""
    done = folder / "20260101-000000"
    shutil.copytree(runs["autoencoder"], done)
    newer = unfinished_copy(runs["autoencoder"], folder / "20260102-000000")
    return done, newer


def test_a_folder_of_runs_gives_its_newest_finished_run_and_says_so(mnist_stage_runs, tmp_path, caplog):
    folder = tmp_path / "runs" / "autoencoder"
    done, newer = two_autoencoder_runs(mnist_stage_runs, folder)
    with caplog.at_level(logging.INFO):
        assert resolve_checkpoint(str(folder)) == done / "checkpoints" / "best.ckpt"
    assert str(newer) in caplog.text and "unfinished" in caplog.text and str(done) in caplog.text
    with pytest.raises(UserError, match="unfinished"):
        resolve_checkpoint(str(newer))  # an unfinished run folder named directly
    shutil.rmtree(done)
    with pytest.raises(UserError, match="no finished run"):
        resolve_checkpoint(str(folder))


def test_entry_points_refuse_an_unfinished_input_run(mnist_stage_runs, tmp_path, capsys):
    folder = tmp_path / "runs" / "autoencoder"
    done, newer = two_autoencoder_runs(mnist_stage_runs, folder)
    shutil.rmtree(done)
    out = tmp_path / "out"
    fails_cleanly(fit_main, ["latent_gan", f"ae_checkpoint={folder}", *fit_args(mnist_stage_runs), f"out_dir={out}"],
                  out, str(newer), "no finished run", capsys=capsys)
    agent = [o for o in tiny_agent_overrides(mnist_stage_runs) if not o.startswith("env.ae_checkpoint")]
    fails_cleanly(rl_main, ["mnist_task", *agent, f"env.ae_checkpoint={newer}", f"out_dir={out}"], out,
                  str(newer), "unfinished", capsys=capsys)


def test_benchmark_stage_reuse_never_picks_an_unfinished_run(mnist_stage_runs, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    done, newer = two_autoencoder_runs(mnist_stage_runs, runs_dir / "autoencoder")
    cfg = run_info(done)
    assert matching_run(runs_dir, "autoencoder", cfg) == done  # the newer unfinished one has the same config
    shutil.rmtree(done)
    assert matching_run(runs_dir, "autoencoder", cfg) is None  # trained afresh, not reused
    out = tmp_path / "out"
    stages = [f"stages.{k}={mnist_stage_runs[k]}" for k in ("latent_gan", "classifier", "judge")]
    fails_cleanly(bench_main, ["--experiment", "mnist-task", f"stages.autoencoder={newer}", *stages,
                               f"runs_dir={out / 'runs'}", f"results_dir={out / 'results'}",
                               f"eval.test_root={mnist_stage_runs['idx']}"], out,
                  "stages.autoencoder", str(newer), "unfinished", capsys=capsys)


def test_autoencoder_and_gan_of_different_code_sizes_are_one_line(mnist_stage_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit_main(["autoencoder", *fit_args(mnist_stage_runs), "module.code_dim=8", f"out_dir={tmp_path}"]) == 0
    small_ae = Path(capsys.readouterr().out.strip().splitlines()[-1])
    agent = [o for o in tiny_agent_overrides(mnist_stage_runs) if not o.startswith("env.ae_checkpoint")]
    fails_cleanly(rl_main, ["mnist_task", *agent, f"env.ae_checkpoint={small_ae}", f"out_dir={out}"], out,
                  "8", "32", capsys=capsys)


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_written_files_get_the_umask_mode(mnist_stage_runs, tmp_path, capsys, umask):
    old = os.umask(umask)
    try:
        assert fit_main(["autoencoder", *fit_args(mnist_stage_runs), f"out_dir={tmp_path / 'fit'}"]) == 0
        assert rl_main(["mnist_task", *tiny_agent_overrides(mnist_stage_runs), "train.epochs=1",
                        f"out_dir={tmp_path / 'rl'}"]) == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"best.ckpt", "last.ckpt", "config.yaml", "test_metrics.json", "train_state.pt",
            "train_summary.json"} <= names, names
    wrong = {str(p): oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o777 != 0o666 & ~umask}
    assert not wrong, wrong
