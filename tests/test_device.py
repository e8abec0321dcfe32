"""``device=cpu|cuda|auto``: resolution, the one-line error without a GPU, CPU runs unchanged, old runs still match."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from configs import load_config
from configs.schema import RLConfig, with_rl_defaults
from rl.train import SECTIONS, train_agent
from tests.conftest import tiny_agent_overrides
from utils.devices import resolve_device
from utils.errors import UserError
from utils.runs import config_changes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_and_auto_without_a_gpu_resolve_to_the_cpu(no_gpu, caplog):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with caplog.at_level("WARNING", logger="utils.devices"):
        resolve_device("auto", announce="the nets")
    assert "device: cpu for the nets (device=auto)" in caplog.text


def test_cuda_without_a_gpu_and_unknown_values_are_one_line_errors(no_gpu):
    with pytest.raises(UserError, match=r"device='cuda' invalid: .*no CUDA GPU.*expected device=cpu or device=auto"):
        resolve_device("cuda")
    with pytest.raises(UserError, match=r"device='tpu' invalid: expected one of \['auto', 'cpu', 'cuda'\]") as err:
        resolve_device("tpu")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"device.*tpu"):  # the config's choices are checked when it loads
        load_config("mnist_task", ["device=tpu"], schema=RLConfig, sections=SECTIONS)


def test_rl_train_device_cuda_without_a_gpu_exits_2_before_any_work(tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU for this process even on a GPU machine
    proc = subprocess.run([sys.executable, "-m", "rl.train", "mnist_task", "device=cuda", f"out_dir={out}",
                           f"env.ae_checkpoint={tmp_path / 'none'}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "device='cuda'" in errors[0] and "expected device=cpu or device=auto" in errors[0]
    assert "does not exist" not in proc.stderr  # failed on the device, before the env was built
    assert not out.exists()


def test_a_run_saved_before_device_existed_matches_and_resumes_at_the_default(tmp_path):
    from benchmarks.stages import matching_run

    cfg = load_config("mnist_task", [f"out_dir={tmp_path}"], schema=RLConfig, sections=SECTIONS)
    assert cfg["device"] == "auto"
    old = {k: v for k, v in cfg.items() if k != "device"}
    assert config_changes(with_rl_defaults(old), cfg) == []  # the resume comparison of rl.train
    run = tmp_path / "mnist_task" / "20260101-000000"
    run.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(old), run / "config.yaml")
    (run / "train_summary.json").write_text("{}")
    assert matching_run(tmp_path, "mnist_task", cfg) == run
    assert matching_run(tmp_path, "mnist_task", {**cfg, "device": "cpu"}) is None  # a request for another device
    assert with_rl_defaults({"train": {"epochs": 3}})["train"]["num_envs"] == 64  # sections' keys too


def test_cores_and_factories_on_their_own_device_are_unchanged():
    from rl.builders import factory_on
    from rl.builders.mnist_task import MnistTaskFactory
    from tests.test_rl_agents import make_core

    core = make_core(2, 0)
    cpu = torch.device("cpu")
    assert core.to(cpu) is core and core.to("cpu") is core
    assert factory_on(core.spawn, cpu).__self__ is core  # a builder that returns a core's bound spawn
    factory = MnistTaskFactory(core)
    assert factory_on(factory, cpu).base is core
    plain = lambda n, seed: core.spawn(n, seed)  # noqa: E731 - a builder result without to(device)
    assert factory_on(plain, cpu) is plain


def test_agents_built_on_the_cpu_device_are_the_default_ones():
    from rl.agents import AGENTS, act, build_algorithm

    obs = torch.randn(3, 45)
    for name in AGENTS:
        if name == "transform_pg":
            continue
        torch.manual_seed(0)
        default = build_algorithm(name, 45, 5, 3.0, hidden_sizes=[8])
        torch.manual_seed(0)
        on_cpu = build_algorithm(name, 45, 5, 3.0, device="cpu", hidden_sizes=[8])
        assert all(p.device.type == "cpu" for p in on_cpu.parameters())
        assert torch.equal(act(default, obs), act(on_cpu, obs)), name


def test_rl_train_with_device_cpu_gives_the_policy_of_a_run_without_the_key(mnist_stage_runs, tmp_path):
    def run(name, *extra):
        cfg = load_config("mnist_task", [*tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path / name}",
                                         *extra], schema=RLConfig, sections=SECTIONS)
        run_dir = train_agent(cfg)
        return (torch.load(run_dir / "policy.pt", weights_only=True)["state_dict"],
                yaml.safe_load((run_dir / "config.yaml").read_text()),
                json.loads((run_dir / "train_summary.json").read_text()))

    (p_default, c_default, s_default), (p_cpu, c_cpu, s_cpu) = run("default"), run("cpu", "device=cpu")
    assert p_default.keys() == p_cpu.keys()
    assert all(torch.equal(p_default[k], p_cpu[k]) for k in p_default)
    assert s_default["best_reward"] == s_cpu["best_reward"] and s_cpu["device"] == "cpu"
    assert c_cpu["device"] == "cpu" and c_default["device"] == "auto"  # the requested device is recorded
    if not torch.cuda.is_available():
        assert s_default["device"] == "cpu"


def test_resume_accepts_an_old_run_without_device_and_another_device(tmp_path, caplog):
    from rl.loop import _STATE_FORMAT, TRAIN_STATE_FILE
    from rl.train import _resume_folder

    cfg = load_config("mnist_task", [f"out_dir={tmp_path}"], schema=RLConfig, sections=SECTIONS)
    run = tmp_path / "mnist_task" / "20260101-000000"
    run.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({k: v for k, v in cfg.items() if k != "device"}), run / "config.yaml")
    torch.save({"format": _STATE_FORMAT}, run / TRAIN_STATE_FILE)
    old = {k: v for k, v in cfg.items() if k != "device"}  # a benchmark resumes with the saved config as it is
    assert _resume_folder({**old, "resume": str(run)}) == run
    with caplog.at_level("WARNING", logger="rl.train"):
        assert _resume_folder({**cfg, "device": "cpu", "resume": str(run)}) == run
    assert "it started with device=auto" in caplog.text
    with pytest.raises(UserError, match=r"different config \(seed differ\)"):
        _resume_folder({**cfg, "seed": 5, "resume": str(run)})
