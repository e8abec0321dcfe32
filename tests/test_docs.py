"""The repository documents itself: the config reference is current, the worked example runs, no internal references."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_generated_from_the_schema():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_config_reference", ROOT / "docs" / "make_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.reference
    assert (ROOT / "docs" / "config.md").read_text() == reference(), \
        "docs/config.md is stale: run python docs/make_config_reference.py > docs/config.md"
    assert "`p1` | `Union[float, str]` | `'auto'`" in reference()  # a field, its type and its default


def test_no_references_to_documents_a_clone_does_not_have():
    pattern = re.compile(r"SPEC\.md|STYLE\.md|SPEC §|\.\./shared/SPEC")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".cfg", ".sh")
            and ".venv" not in p.parts and "tests" not in p.parts
            for i, line in enumerate(p.read_text(errors="ignore").splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


@pytest.fixture
def reach_example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    import reach

    from rl.agents import AGENTS
    from rl.builders import ENVS

    yield reach
    AGENTS.pop("toy_ddpg", None)
    ENVS._entries.pop("toy_reach", None)
    sys.modules.pop("reach", None)


def test_the_adding_an_experiment_example_runs_through_the_same_seams(reach_example, tmp_path):
    from gymnasium.utils.env_checker import check_env

    from rl.agents import act, load_policy
    from rl.envs import BatchedCore, SingleEnv
    from tests.conftest import paired_vector_envs

    core = reach_example.ReachCore(num_envs=1)
    assert isinstance(core, BatchedCore)
    check_env(SingleEnv(core), skip_render_check=True)
    paired_vector_envs(core, 4, seed=3)  # batched == DummyVectorEnv on the same seed
    run = reach_example.main([f"out_dir={tmp_path}", "train.total_steps=3000", "train.epochs=2"])
    summary = json.loads((run / "train_summary.json").read_text())
    # standing still costs 5 · E|target| ≈ 3.8 on this grid: the trained DDPG gets much closer
    assert summary["best_reward"] > -2.0 and summary["epochs"] == 2
    test = reach_example.ReachCore(num_envs=8, seed=100)
    obs = test.reset()
    assert act(load_policy(run), obs).shape == (8, 2)
