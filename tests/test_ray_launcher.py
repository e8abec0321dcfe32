"""launcher=ray: a seeds grid on Ray gives each seed the figures of a local run of that seed; job errors and
impossible resources reach the user as one line; the local path works without Ray."""
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.run import main as bench_main
from tests.conftest import tiny_agent_overrides

REPO = Path(__file__).resolve().parents[1]
NOT_COMPARED = ("wall", "runs", "config", "launcher")


@pytest.fixture(scope="module")
def local_ray():
    """A new local Ray (2 CPUs, no dashboard) in this process; the benchmarks find it and leave it running.

    ``address="local"``: a cluster already running on this machine (a benchmark's) is not joined.
    """
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def tiny_bench(runs: dict, tmp: Path, *extra: str) -> list:
    stages = [f"stages.{k}={runs[k]}" for k in ("autoencoder", "latent_gan", "classifier", "judge")]
    # the tiny digits as the agents' pool too (the checkpoints come from the stages)
    tiny = [o for o in tiny_agent_overrides(runs) if not o.startswith("env.") or "checkpoint" not in o]
    agent = "[" + ",".join(f"'{o}'" for o in [*tiny, "env.augment_copies=0"]) + "]"
    return ["--experiment", "mnist-task", *stages, f"overrides.agent={agent}", f"runs_dir={tmp / 'runs'}",
            f"results_dir={tmp / 'results'}", f"eval.test_root={runs['idx']}", "eval.max_digits=12",
            "eval.task_sets=['+1']", *extra]


def run_bench(args: list, capsys) -> Path:
    code = bench_main(args)
    assert code == 0, capsys.readouterr().err[-3000:]
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def figures(summary_file: Path) -> dict:
    summary = json.loads(summary_file.read_text())
    return {k: v for k, v in summary.items() if not any(word in k for word in NOT_COMPARED)}


@pytest.fixture(scope="module")
def local_grid(mnist_stage_runs, tmp_path_factory) -> Path:
    """The result folder of ``seeds=[0,1]`` on the local launcher (one seed after another)."""
    tmp = tmp_path_factory.mktemp("local_grid")
    assert bench_main(tiny_bench(mnist_stage_runs, tmp, "seeds=[0,1]")) == 0
    return next((tmp / "results").iterdir())


def test_ray_seed_grid_equals_local_runs_of_each_seed(mnist_stage_runs, local_grid, tmp_path, capsys, local_ray):
    grid = run_bench(tiny_bench(mnist_stage_runs, tmp_path, "launcher=ray", "seeds=[0,1]"), capsys)
    for seed in (0, 1):
        assert figures(grid / f"seed_{seed}" / "summary.json") == figures(local_grid / f"seed_{seed}" / "summary.json")
    assert figures(grid / "seed_0" / "summary.json") != figures(grid / "seed_1" / "summary.json")  # the seed matters
    top = json.loads((grid / "summary.json").read_text())
    assert top["seeds"] == [0, 1] and top["launcher"] == "ray"
    row = top["rows"][0]
    per_seed = [row["judge_acc_seed0"], row["judge_acc_seed1"]]
    assert row["judge_acc_mean"] == pytest.approx(sum(per_seed) / 2)
    assert row["judge_acc_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2)  # population std, as elsewhere
    agents = sorted((tmp_path / "runs" / "mnist_task").glob("*/config.yaml"))
    assert len(agents) == 2  # one agent per seed, trained with that seed
    assert "Experiment B over seeds" in (grid / "report.md").read_text()


def test_a_one_seed_grid_is_the_same_run_as_that_seed_alone(mnist_stage_runs, local_grid, tmp_path, capsys):
    one = run_bench(tiny_bench(mnist_stage_runs, tmp_path, "seeds=[1]"), capsys)
    assert figures(one / "seed_1" / "summary.json") == figures(local_grid / "seed_1" / "summary.json")


def test_a_user_error_inside_a_ray_job_reaches_the_user_as_its_own_line(local_ray, tmp_path):
    from benchmarks.launchers import ray_pool
    from benchmarks.mnist_task import check_test_root
    from utils.errors import UserError

    resources = {"eval": {"num_cpus": 1, "num_gpus": 0}}
    with pytest.raises(UserError) as err:
        with ray_pool({"address": None, "num_cpus": None}, resources) as submit:
            submit("eval", check_test_root, str(tmp_path / "no_such_folder")).result()
    message = str(err.value)
    assert "no_such_folder" in message and "\n" not in message and "Traceback" not in message


def test_resources_no_node_has_fail_before_any_work(mnist_stage_runs, tmp_path, capsys, local_ray):
    code = bench_main(tiny_bench(mnist_stage_runs, tmp_path, "launcher=ray", "resources.agent.num_gpus=1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: resources.agent=") and "no node of the Ray cluster" in err[-1]
    assert not list((tmp_path / "results").glob("*")) and not (tmp_path / "runs").exists()


def test_launcher_ray_without_ray_installed_is_one_line(monkeypatch):
    from benchmarks.launchers import _import_ray
    from utils.errors import UserError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserError, match=r"launcher=ray needs the ray package"):
        _import_ray()


def test_the_local_path_needs_no_ray():
    # Tianshou imports ray when it is installed; our code must work with it absent: block it, then import
    # every module of the default path and open a local job pool
    code = ("import sys; sys.modules['ray'] = None\n"
            "import benchmarks.run, benchmarks.mnist_task_grid, benchmarks.mnist_task_overlap, rl.train\n"
            "from benchmarks.launchers import job_pool\n"
            "with job_pool({'launcher': 'local'}, 1) as submit: assert submit('eval', abs, -3).result() == 3\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


TWO_NODES = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster
    from benchmarks.run import main
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        code = main([*sys.argv[1:], f"ray.address={cluster.address}"])
    finally:
        cluster.shutdown()
    sys.exit(code)
""")


@pytest.mark.slow
def test_a_two_node_cluster_on_loopback_runs_the_grid_to_the_local_figures(mnist_stage_runs, local_grid, tmp_path):
    args = tiny_bench(mnist_stage_runs, tmp_path, "launcher=ray", "seeds=[0,1]")
    done = subprocess.run([sys.executable, "-c", TWO_NODES, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    grid = Path(done.stdout.strip().splitlines()[-1])
    for seed in (0, 1):
        assert figures(grid / f"seed_{seed}" / "summary.json") == figures(local_grid / f"seed_{seed}" / "summary.json")


@pytest.mark.slow
def test_sigterm_under_ray_stops_the_benchmark_with_one_line_and_no_leftovers(mnist_stage_runs, tmp_path):
    # Ray's core installs an aborting SIGTERM handler in the driver: ours must be the one that runs
    args = [a.replace("train.total_steps=640", "train.total_steps=200000") for a in tiny_bench(
        mnist_stage_runs, tmp_path, "launcher=ray", "ray.num_cpus=2", "seeds=[0,1]")]
    proc = subprocess.Popen([sys.executable, "benchmarks/run.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((tmp_path / "runs" / "mnist_task").glob("*/config.yaml")) and time.time() < deadline:
        time.sleep(1)  # an agent job has started
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM") and "Traceback" not in err
    assert not list((tmp_path / "results").glob("*")) and out == ""


# ---- the other benchmarks on Ray: experiment C's stages and experiment A's agent seeds ----------------------
from tests.test_transform_cli import pg_overrides, rnn_overrides, stage_runs  # noqa: E402,F401 (a fixture)


def transformations_args(runs: dict, tmp: Path, *extra: str) -> list:
    listed = lambda items: "[" + ",".join(f"'{o}'" for o in items) + "]"  # noqa: E731
    pg = [*pg_overrides(runs, False), "env.source=idx", f"env.root={runs['idx']}"]
    rnn = [*rnn_overrides(runs, False), "data.source=idx", f"data.root={runs['idx']}"]
    return ["--experiment", "transformations", "seeds=[0,1]", "objective.steps=2",
            f"stages.autoencoder={runs['autoencoder']}", f"stages.discriminator={runs['discriminator']}",
            f"stages.judge_discriminator={runs['discriminator']}", f"overrides.transform_pg={listed(pg)}",
            f"overrides.transform_rnn={listed(rnn)}", f"runs_dir={tmp / 'runs'}", f"results_dir={tmp / 'results'}",
            f"eval.test_root={runs['idx']}", "eval.max_digits=12", "eval.strip_pairs=2", *extra]


def scores(summary_file: Path) -> list:
    rows = json.loads(summary_file.read_text())["rows"]
    return [{k: v for k, v in row.items() if "wall" not in k} for row in rows]


def test_transformations_on_ray_trains_every_seed_as_a_job_to_the_local_figures(stage_runs, tmp_path, capsys,
                                                                                 local_ray, caplog):
    local = run_bench(transformations_args(stage_runs, tmp_path / "local"), capsys)
    assert bench_main(transformations_args(stage_runs, tmp_path / "ray", "launcher=ray")) == 0
    ray_run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    for method in ("transform_pg", "transform_rnn"):  # trained by Ray, not here
        assert caplog.text.count(f"stage {method}: training ({method}, as a job)") == 2
    assert scores(ray_run / "summary.json") == scores(local / "summary.json")
    learned = [row for row in scores(local / "summary.json") if row["seed"] is not None]
    assert len(learned) == 4 and learned[0] != learned[1]  # 2 methods × 2 seeds, and the seed matters
    for method in ("transform_pg", "transform_rnn"):
        assert len(list((tmp_path / "ray" / "runs" / method).glob("*/config.yaml"))) == 2
    assert (ray_run / "strip_transform_pg.png").is_file()  # written by the evaluation job


def weights(run: Path) -> dict:
    import torch

    state = torch.load(run / "policy.pt", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


@pytest.mark.slow
def test_interfacegan_agent_seeds_train_as_ray_jobs_to_the_local_policies(tmp_path, local_ray, caplog):
    from tests.test_compare_interfacegan import HAS_FACE_WORLD, TINY_AGENT, _checkpoint, bench

    if not HAS_FACE_WORLD:
        pytest.skip("offline face packages missing")
    from benchmarks.interfacegan import agent_runs
    from benchmarks.launchers import job_pool
    from lightning_modules.face_attributes import AgeRegressorModule

    import torch

    torch.manual_seed(0)
    age = _checkpoint(AgeRegressorModule(backbone="small", input_size=32), tmp_path / "age.ckpt")
    tiny = "agent_overrides=[" + ",".join(f"'{o}'" for o in TINY_AGENT) + "]"
    runs = {}
    for launcher in ("local", "ray"):
        cfg = bench(f"runs_dir={tmp_path / launcher}", f"models.age_checkpoint={age}", "agent_seeds=[0,1]", tiny,
                    f"launcher={launcher}")
        if launcher == "ray":
            with job_pool(cfg, 1) as submit:
                runs[launcher] = agent_runs(cfg, submit)
        else:
            runs[launcher] = agent_runs(cfg)
    assert caplog.text.count("training one (as a job)") == 2
    for here, there in zip(runs["local"], runs["ray"]):
        assert here.wall_s is not None and there.wall_s is not None  # both trained, not reused
        mine, theirs = (weights(s.run) for s in (here, there))
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    first, second = (weights(s.run) for s in runs["ray"])
    assert any(not torch.equal(v, second[k]) for k, v in first.items())  # the seed matters


@pytest.mark.parametrize(("address", "expected"), [("127.0.0.1:1", "nothing answers there"),
                                                    ("no-port", "expected 'auto' or host:port")])
def test_a_ray_address_nothing_answers_at_fails_at_once_with_one_line(address, expected):
    from benchmarks.launchers import ray_pool
    from utils.errors import UserError

    start = time.time()
    with pytest.raises(UserError, match=f"ray.address='{address}' invalid: {expected}"):
        with ray_pool({"address": address, "num_cpus": None}, {}):
            pass
    assert time.time() - start < 30  # Ray's own retries take minutes
