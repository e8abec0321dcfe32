"""``benchmarks/run.py --suite speed`` on a fresh clone: missing checkpoints become untrained stand-ins, said so."""
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.run import main as bench_main

TINY = ["num_envs=2", "steps=1", "dummy_steps=1", "num_threads=[1]"]


def tiny_face(tmp_path: Path) -> str:
    """face_age overrides: small pools, a given boundary and fixed P1/P2 (no SVM, no calibration)."""
    boundary = tmp_path / "boundary.npy"
    np.save(boundary, np.ones(100, dtype=np.float32) / 10.0)  # the DCGAN's L = 100
    return (f"env_overrides.face_age=[env.train_pool=32,env.eval_pool=4,env.boundary_path={boundary},"
            "env.mdp.p1=0.1,env.mdp.p2=0.2]")


def test_speed_suite_without_checkpoints_times_marked_stand_ins(tmp_path, idx_dir, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # no runs/ here: every checkpoint the env configs name is missing
    tiny_mnist = f"env_overrides.mnist_task=[env.noisy_copies=0,env.source=idx,env.root={idx_dir}]"
    args = ["--suite", "speed", *TINY, tiny_mnist, tiny_face(tmp_path), f"results_dir={tmp_path / 'res'}"]
    assert bench_main(args) == 0
    out = next((tmp_path / "res").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert {(s["env"], s["module"], s["missing"]) for s in summary["stand_ins"]} == {
        ("mnist_task", "autoencoder", "runs/autoencoder"), ("mnist_task", "latent_gan", "runs/latent_gan"),
        ("mnist_task", "classifier", "runs/classifier"), ("face_age", "age_regressor", "runs/age_regressor")}
    assert summary["skipped"] == [] and [r["env"] for r in summary["rows"]] == ["mnist_task", "face_age"]
    assert [r["untrained"] for r in summary["rows"]] == ["autoencoder+latent_gan+classifier", "age_regressor"]
    for row in summary["rows"]:
        assert row["overhead_ratio"] == pytest.approx(row["step_ms"] / row["forward_ms"]) and row["overhead_ratio"] >= 1
    assert summary["device"]["usable_cores"] >= 1 and summary["device"]["torch_default_threads"] == 1
    report = (out / "report.md").read_text()
    assert "UNTRAINED STAND-INS" in report and "`runs/age_regressor` missing → untrained `age_regressor`" in report
    assert "overhead_ratio = step_ms ÷ forward_ms" in report and summary["device"]["cpu_model"] in report
    assert sum("UNTRAINED" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 4
    assert not list(tmp_path.glob("runs")), "stand-ins are never written where a real run would be looked for"


def test_speed_suite_without_stand_ins_skips_and_fails_when_nothing_is_left(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = bench_main(["--suite", "speed", "envs=[mnist_task]", "stand_ins=false", *TINY, f"results_dir={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no env could be built: mnist_task: MissingFileError: checkpoint 'runs/autoencoder' does not exist" in err
    assert not any(Path(tmp_path).rglob("summary.json"))


def test_only_a_missing_checkpoint_gets_a_stand_in_never_an_unfinished_run(tmp_path):
    from benchmarks.speed_stand_ins import stand_in_missing
    from utils.errors import UserError

    unfinished = tmp_path / "runs" / "autoencoder" / "20260101-000000"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("name: autoencoder\n")
    env_cfg = {"ae_checkpoint": str(unfinished.parent), "gan_checkpoint": str(tmp_path / "nothing")}
    with pytest.raises(UserError, match="holds no finished run"):
        stand_in_missing("mnist_task", dict(env_cfg), tmp_path)
    env_cfg["ae_checkpoint"] = "packaged"  # not a path: left alone
    assert [s["key"] for s in stand_in_missing("mnist_task", env_cfg, tmp_path)] == ["gan_checkpoint"]


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    from benchmarks.speed_report import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.0GHz\n")
    assert cpu_model(str(info)) == "Some CPU @ 2.0GHz" and cpu_model(str(tmp_path / "none")) is None


def test_timed_counts_rows_of_calls_of_any_batch_size():
    import torch

    from benchmarks.speed import Timed

    timed = Timed(torch.nn.Linear(3, 2))
    for n in (4, 1, 0):  # a full step, a one-row reset, an empty call
        timed(torch.zeros(n, 3))
    assert (timed.calls, timed.rows, len(timed.last_input)) == (3, 5, 1)
