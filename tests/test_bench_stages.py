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
    older = _run(tmp_path, "20260101-000000", {**cfg, "out_dir": "elsewhere", "train": {"total_steps": 300},
                                               "num_threads": 1})
    assert matching_run(tmp_path, "mnist_task", cfg) == older  # out_dir, train.strip_every, num_threads do not count
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


def test_a_run_saved_before_an_env_key_existed_matches_at_that_keys_default(tmp_path):
    from configs import load_config
    from configs.schema import RLConfig
    from rl import train as rl_cli

    cfg = load_config("age_ppo", [], schema=RLConfig, sections=rl_cli.SECTIONS, values={"out_dir": str(tmp_path)})
    assert cfg["env"]["mdp"]["identity_cost"] == 0.0  # filled from the env builder's AgeMDP default
    saved = {**cfg, "name": "mnist_task", "env": {**cfg["env"], "mdp": dict(cfg["env"]["mdp"])}}
    del saved["env"]["mdp"]["identity_cost"]  # a run saved before the key existed
    old = _run(tmp_path, "20260101-000000", saved)
    want = {**cfg, "name": "mnist_task"}
    assert matching_run(tmp_path, "mnist_task", want) == old
    graded = {**want, "env": {**cfg["env"], "mdp": {**cfg["env"]["mdp"], "identity_cost": 1.0}}}
    assert matching_run(tmp_path, "mnist_task", graded) is None  # another value of the new key is another run
