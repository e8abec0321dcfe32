"""Which earlier run a benchmark reuses for a stage."""
from omegaconf import OmegaConf

from benchmarks.stages import matching_run


def _run(root, stamp, cfg, finished=True):
    run = root / "mnist_task" / stamp
    run.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), run / "config.yaml")
    if finished:
        (run / "train_summary.json").write_text("{}")
    return run


def test_newest_finished_run_with_the_same_config_up_to_volatile_keys(tmp_path):
    cfg = {"name": "mnist_task", "seed": 0, "out_dir": "runs", "resume": None,
           "train": {"total_steps": 300, "strip_every": 2}}
    older = _run(tmp_path, "20260101-000000", {**cfg, "out_dir": "elsewhere", "train": {"total_steps": 300}})
    assert matching_run(tmp_path, "mnist_task", cfg) == older  # out_dir and train.strip_every do not count
    _run(tmp_path, "20260102-000000", {**cfg, "seed": 1})  # another seed computes something else
    _run(tmp_path, "20260103-000000", cfg, finished=False)  # killed: never reused
    assert matching_run(tmp_path, "mnist_task", cfg) == older
    newer = _run(tmp_path, "20260104-000000", {**cfg, "train": {"total_steps": 300, "strip_every": 5}})
    assert matching_run(tmp_path, "mnist_task", cfg) == newer
    assert matching_run(tmp_path, "mnist_task", {**cfg, "train": {"total_steps": 301, "strip_every": 2}}) is None
    assert matching_run(tmp_path, "latent_gan", cfg) is None  # no such stage folder


def test_a_run_saved_before_a_trainer_key_existed_matches_at_that_keys_default(tmp_path):
    from dataclasses import asdict

    from configs.schema import TrainerConfig

    trainer = asdict(TrainerConfig())
    cfg = {"name": "mnist_task", "seed": 0, "trainer": trainer}
    old_trainer = {k: v for k, v in trainer.items() if k not in ("strategy", "num_nodes")}
    old = _run(tmp_path, "20260101-000000", {**cfg, "trainer": old_trainer})
    assert matching_run(tmp_path, "mnist_task", cfg) == old
    assert matching_run(tmp_path, "mnist_task", {**cfg, "trainer": {**trainer, "num_nodes": 2}}) is None
