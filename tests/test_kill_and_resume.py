"""kill -9 in the middle of ``lightning_modules.fit`` and ``rl.train``, then resume from the run folder."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.conftest import FAST_TRAINER, tiny_agent_overrides

ROOT = Path(__file__).resolve().parents[1]


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def kill_when(proc: subprocess.Popen, pattern: str, root: Path, timeout: float = 300.0,
              sig: int = signal.SIGKILL) -> Path:
    """Send ``sig`` (SIGKILL) to ``proc`` as soon as a file matching ``pattern`` appears under ``root``, wait
    for it to end; return that file."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            os.kill(proc.pid, sig)
            proc.wait(timeout=120)
            return found[0]
        assert proc.poll() is None, f"finished before it could be killed:\n{proc.stderr.read()[-3000:]}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {pattern} under {root} after {timeout} s")


def finish(*args) -> Path:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_rl_train_resumes_after_kill_9(mnist_stage_runs, tmp_path):
    overrides = [*tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path}", "train.total_steps=3200",
                 "train.epochs=10"]
    state = kill_when(start("-m", "rl.train", "mnist_task", *overrides), "mnist_task/*/train_state.pt", tmp_path)
    run_dir = state.parent
    assert not (run_dir / "train_summary.json").exists()
    killed_at = torch.load(state, weights_only=False)["counters"][0]
    assert killed_at < 10

    changed = subprocess.run([sys.executable, "-m", "rl.train", f"resume={run_dir}", "agent.hidden_sizes=[8]"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert changed.returncode == 2 and "different config" in changed.stderr and "agent" in changed.stderr

    assert finish("-m", "rl.train", f"resume={run_dir}") == run_dir  # same folder, saved config
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] >= killed_at and summary["epochs"] == 10
    assert summary["env_steps"] >= 3200
    assert not list(run_dir.glob(".*.tmp"))
    again = subprocess.run([sys.executable, "-m", "rl.train", f"resume={run_dir}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 2 and "it finished" in again.stderr


def test_fit_resumes_after_kill_9(mnist_stage_runs, tmp_path):
    data = ["data.source=idx", f"data.root={mnist_stage_runs['idx']}", "data.batch_size=16"]
    args = [*FAST_TRAINER, "trainer.max_epochs=40", f"out_dir={tmp_path}", *data]
    last = kill_when(start("-m", "lightning_modules.fit", "autoencoder", *args),
                     "autoencoder/*/checkpoints/last.ckpt", tmp_path)
    run_dir = last.parents[1]
    assert not (run_dir / "test_metrics.json").exists()
    epoch_killed = torch.load(last, weights_only=True)["epoch"]
    assert epoch_killed < 39
    assert finish("-m", "lightning_modules.fit", "autoencoder", *args, f"resume={run_dir}") == run_dir
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 39 and ckpt["global_step"] == 80  # 40 epochs of 2 batches, none lost or repeated
    assert json.loads((run_dir / "test_metrics.json").read_text())["metrics"]


def test_ctrl_c_and_sigterm_end_with_one_line_exit_130_143_and_resume(mnist_stage_runs, tmp_path):
    data = ["data.source=idx", f"data.root={mnist_stage_runs['idx']}", "data.batch_size=16"]
    fit_args = [*FAST_TRAINER, "trainer.max_epochs=40", f"out_dir={tmp_path}", *data]
    agent_args = [*tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path}", "train.total_steps=3200",
                  "train.epochs=10"]
    cases = [(signal.SIGINT, 130, ["-m", "lightning_modules.fit", "autoencoder", *fit_args],
              "autoencoder/*/checkpoints/last.ckpt", "test_metrics.json"),
             (signal.SIGTERM, 143, ["-m", "rl.train", "mnist_task", *agent_args], "mnist_task/*/train_state.pt",
              "train_summary.json")]
    for sig, code, args, pattern, mark in cases:
        proc = start(*args)
        found = kill_when(proc, pattern, tmp_path, sig=sig)
        run_dir = found.parent if found.name == "train_state.pt" else found.parents[1]
        err = proc.stderr.read()
        assert proc.returncode == code, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"interrupted by {sig.name}") and f"resume={run_dir}" in last, last
        assert not (run_dir / mark).exists() and not list(run_dir.rglob(".*.tmp"))
        assert finish(*args[:2], f"resume={run_dir}") == run_dir
        assert (run_dir / mark).is_file()


def descendants(pid: int) -> set:
    """Every live process below ``pid`` (children of children included), from /proc."""
    found, todo = set(), [pid]
    while todo:
        try:
            tasks = list(Path(f"/proc/{todo.pop()}/task").iterdir())
        except OSError:  # the process ended while we looked
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            todo += [k for k in kids if k not in found]
            found.update(kids)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def benchmark_args(runs: dict, root: Path) -> list:
    stages = [f"stages.{k}={runs[k]}" for k in ("autoencoder", "latent_gan", "classifier", "judge")]
    agent = [o for o in tiny_agent_overrides(runs) if not o.startswith(("env.ae_", "env.gan_", "env.classifier_"))]
    agent = "[" + ",".join(f"'{o}'" for o in [*agent, "train.total_steps=1280", "train.epochs=4"]) + "]"
    return ["benchmarks/run.py", "--experiment", "mnist-task", *stages, f"overrides.agent={agent}",
            f"runs_dir={root / 'runs'}", f"results_dir={root / 'results'}", f"eval.test_root={runs['idx']}",
            "eval.max_digits=12", "eval.task_sets=['+1','-1']", "parallel_agents=2"]


def figures(result: Path) -> dict:
    summary = json.loads((result / "summary.json").read_text())
    return {k: v for k, v in summary.items() if "wall" not in k and k not in ("runs", "config")}


def test_benchmark_killed_mid_training_leaves_no_worker_and_resumes_to_the_same_figures(mnist_stage_runs, tmp_path):
    reference = figures(finish(*benchmark_args(mnist_stage_runs, tmp_path / "uninterrupted")))

    root = tmp_path / "killed"
    proc = start(*benchmark_args(mnist_stage_runs, root))
    workers: set = set()
    deadline = time.time() + 300
    while not list(root.glob("runs/mnist_task/*/train_state.pt")):  # an agent finished its first epoch
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no agent epoch within 300 s"
        workers |= descendants(proc.pid)
        time.sleep(0.02)
    workers |= descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(workers) >= 2  # the two agents' processes (and multiprocessing's resource tracker)
    deadline = time.time() + 60
    while any(running(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if running(pid)], "workers outlived the killed benchmark"
    states = [s for s in root.glob("runs/mnist_task/*/train_state.pt") if not (s.parent / "train_summary.json").is_file()]
    assert states, "no agent was interrupted mid-training"  # the other one may have finished before the kill

    again = subprocess.run([sys.executable, *benchmark_args(mnist_stage_runs, root)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the interrupted run" in again.stderr
    for state in states:  # the interrupted agents resumed in place, not trained again
        assert (state.parent / "train_summary.json").is_file()
        assert json.loads((state.parent / "train_summary.json").read_text())["resumed_from_epoch"] >= 1
    assert figures(Path(again.stdout.strip().splitlines()[-1])) == reference


def test_benchmark_sigint_and_sigterm_stop_the_workers_with_one_line(mnist_stage_runs, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and ``kill`` (SIGTERM to the parent
    alone) end a two-agent benchmark promptly with exit 130 / 143, one line naming how to continue, and no
    worker left behind."""
    for sig, code, group in ((signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)):
        root = tmp_path / sig.name
        proc = subprocess.Popen([sys.executable, *benchmark_args(mnist_stage_runs, root)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        workers: set = set()
        deadline = time.time() + 300
        while not list(root.glob("runs/mnist_task/*/train_state.pt")):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "no agent epoch within 300 s"
            workers |= descendants(proc.pid)
            time.sleep(0.02)
        workers |= descendants(proc.pid)
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=60)  # not "after the agents finish"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == code, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"interrupted by {sig.name}") and "run the same command again" in last, err[-2500:]
        deadline = time.time() + 30
        while any(running(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if running(pid)], f"workers outlived the {sig.name}"
        assert not list(root.rglob(".*.tmp")) and not list((root / "results").glob("*/summary.json"))


SWALLOWED_SIGNAL = """
import ctypes, os, signal, sys, time
from benchmarks.workers import _init_worker, _call

_init_worker(os.getppid()) if sys.argv[1] == "worker" else __import__("utils.cli").cli.install_interrupt_handlers()

def compile_step():  # called from C, as llvmlite calls back while numba compiles
    print(f"signal at {time.time()!r}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs here, where its exception cannot propagate

def job():
    ctypes.CFUNCTYPE(None)(compile_step)()
    time.sleep(5)
    print("carried on")

try:
    _call(job) if sys.argv[1] == "worker" else job()
except BaseException as stop:
    print(type(stop).__name__, flush=True)
    sys.exit(3)
"""


def test_a_sigterm_that_lands_in_a_c_callback_still_stops_the_job(tmp_path):
    """A SIGTERM whose handler runs inside a callback from C (numba compiling tianshou's returns) stops the job
    anyway, in a benchmark worker and in an entry point, without an "Exception ignored" traceback."""
    for where, code, out in (("worker", 128 + signal.SIGTERM, ""), ("cli", 3, "Interrupted")):
        done = subprocess.run([sys.executable, "-c", SWALLOWED_SIGNAL, where], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        ended = time.time()
        assert (done.returncode, done.stdout.strip()) == (code, out), (where, done.stdout, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and "ignored" not in done.stderr, done.stderr[-2000:]
        # timed from the signal, not from the start (imports take seconds on a loaded machine): a job that ran
        # on through its 5-second sleep would end more than 4 s after it
        signalled = float(re.search(r"signal at ([0-9.]+)", done.stderr).group(1))
        assert ended - signalled < 4, "the job ran on after the signal"
