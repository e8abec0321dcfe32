"""A fit on several processes (``trainer.strategy=ddp``): one run folder, written by rank 0 only."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_TRAINER, make_idx_folder

ROOT = Path(__file__).resolve().parents[1]
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_one_run(tmp_path):
    from lightning_modules.checkpoints import load_module

    idx = make_idx_folder(tmp_path / "idx", n_train=64, n_test=32)
    args = ["autoencoder", *FAST_TRAINER, f"out_dir={tmp_path / 'runs'}", "data.source=idx", f"data.root={idx}",
            "data.batch_size=16", "trainer.strategy=ddp", "trainer.devices=2"]
    proc = subprocess.run([sys.executable, "-m", "lightning_modules.fit", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs" / "autoencoder").iterdir())
    assert len(runs) == 1, runs  # rank 1 made no folder of its own
    run = runs[0]
    # each process prints the run it took part in: rank 1 got rank 0's folder (the two processes' lines may interleave)
    assert proc.stdout.count(str(run)) == 2, proc.stdout[-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    assert "sync_dist=True" not in proc.stderr  # validation and test values are averaged over both processes
    summary = json.loads((run / "test_metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["metrics"]["test/loss"] > 0
    assert Path(summary["checkpoint"]) == run / "checkpoints" / "best.ckpt"
    assert load_module(str(run), "autoencoder").hparams.code_dim == 32


def test_in_process_ddp_that_would_rerun_the_command_line_is_refused(tmp_path):
    from configs import load_config
    from lightning_modules.fit import SECTIONS, fit
    from utils.errors import UserError

    cfg = load_config("autoencoder", [*FAST_TRAINER, f"out_dir={tmp_path}", "trainer.strategy=ddp",
                                      "trainer.devices=2"], sections=SECTIONS)
    with pytest.raises(UserError, match="re-running the command line.*trainer.strategy=ddp_spawn") as err:
        fit(cfg)
    assert "\n" not in str(err.value) and "trainer.devices=2" in str(err.value)
    assert not list(tmp_path.glob("autoencoder/*"))  # nothing left behind


@pytest.mark.parametrize("env, first", [
    ({}, True), ({"LOCAL_RANK": "1"}, False), ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "1"}, True), ({"RANK": "3"}, False),
    ({"SLURM_PROCID": "2"}, False), ({"SLURM_PROCID": "0"}, True),
    ({"LOCAL_RANK": "0", "SLURM_PROCID": "2"}, True),  # Lightning's own launch inside a SLURM allocation
])
def test_rank_zero_is_read_from_the_launchers_variables(monkeypatch, env, first):
    from lightning_modules.distributed import is_first_process

    for key in RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_first_process() is first
