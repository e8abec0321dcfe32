"""Experiment B with its stages overlapped in jobs (``schedule: overlap``, and always under ``launcher: ray``).

The same stages, configs and reuse rules as the serial schedule (every job is seeded and runs on one torch
thread); only the order changes. Locally the reward classifier and the judge train in a worker while the
autoencoder and the l-GAN train in this process, then the agents train ``parallel_agents`` at a time (at least
two workers), and each task set is evaluated in a worker as soon as its agent (and the first set's) is done,
beside the agents still training. Workers never outlive the benchmark (:mod:`benchmarks.workers`).

Under ``launcher: ray`` every fit stage is its own job too, and the agents and evaluations of every seed of a
``seeds`` grid are queued at once (:func:`train_and_evaluate_all`); Ray runs as many as the cluster's CPUs allow.
"""
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch

from benchmarks.launchers import Submit, job_pool
from benchmarks.mnist_task import (
    agent_key,
    agent_values,
    eval_context,
    evaluate_common,
    evaluate_set,
)
from benchmarks.stages import Stage, resolve_stage, stage_run, train_stage
from utils.cli import setup_logging

log = logging.getLogger(__name__)
SIDE_STAGES = ("classifier", "judge")  # need no upstream stage: trained beside the AE and the l-GAN


def _fit_stages(cfgs: List[Dict[str, Any]]) -> List[Tuple[Path, float]]:
    torch.set_num_threads(1)
    return [train_stage(cfg, rl=False) for cfg in cfgs]


def _timed(fn: Callable[..., Any], *args: Any) -> Tuple[Any, float]:
    setup_logging()
    torch.set_num_threads(1)
    start = time.time()
    return fn(*args), round(time.time() - start, 1)


def _evaluate_set(bench, runs, i: int, spec: str, out_dir: Path) -> Tuple[Dict[str, Any], float]:
    return _timed(lambda: evaluate_set(bench, eval_context(bench, runs), i, spec, out_dir))


def _evaluate_common(bench, runs) -> Tuple[Dict[str, Any], float]:
    return _timed(lambda: evaluate_common(bench, eval_context(bench, runs)))


def _upstream_here(bench: Dict[str, Any], submit: Submit) -> Dict[str, Stage]:
    """Local: AE and l-GAN here, classifier and judge in a worker meanwhile."""
    side = {stage: resolve_stage(bench, stage, stage, {}, rl=False) for stage in SIDE_STAGES}
    todo = [stage for stage, (run, _) in side.items() if run is None]
    for stage in todo:
        log.warning("stage %s: training (%s, in a worker)", stage, stage)
    future = submit("classifier", _fit_stages, [side[stage][1] for stage in todo]) if todo else None
    torch.set_num_threads(1)  # one thread beside the worker's: oversubscribed cores slowed the AE many-fold
    stages = {"autoencoder": stage_run(bench, "autoencoder", "autoencoder", {})}
    stages["latent_gan"] = stage_run(bench, "latent_gan", "latent_gan",
                                     {"ae_checkpoint": str(stages["autoencoder"].run)})
    trained = dict(zip(todo, future.result())) if future else {}
    for stage, (run, _) in side.items():
        stages[stage] = Stage(run) if run is not None else Stage(*trained[stage])
    return stages


def _upstream_in_jobs(bench: Dict[str, Any], submit: Submit) -> Dict[str, Stage]:
    """Ray: every fit stage its own job; the autoencoder, classifier and judge at once, the l-GAN after the AE."""
    stages: Dict[str, Stage] = {}

    def start(stage: str, values: Dict[str, Any]):
        run, cfg = resolve_stage(bench, stage, stage, values, rl=False)
        if run is not None:
            stages[stage] = Stage(run)
            return None
        log.warning("stage %s: training (%s, as a job)", stage, stage)
        return submit(stage, _fit_stages, [cfg])

    def finish(stage: str, future) -> None:
        if future is not None:
            stages[stage] = Stage(*future.result()[0])

    jobs = {stage: start(stage, {}) for stage in ("autoencoder", *SIDE_STAGES)}
    finish("autoencoder", jobs.pop("autoencoder"))
    finish("latent_gan", start("latent_gan", {"ae_checkpoint": str(stages["autoencoder"].run)}))
    for stage, future in jobs.items():
        finish(stage, future)
    return stages


class _Queue:
    """One benchmark's (one seed's) agent trainings and evaluation jobs, submitted as soon as what they need exists."""

    def __init__(self, bench: Dict[str, Any], stages: Dict[str, Stage], submit: Submit, out_dir: Path):
        self.bench, self.stages, self.submit, self.out_dir = bench, dict(stages), submit, out_dir
        self.pending: Dict[Future, Tuple[str, Any]] = {}
        self.sets: Dict[str, Any] = {}
        self.common, self.walls = None, {}
        resolved = {key: resolve_stage(bench, "agent", "mnist_task", values, rl=True)
                    for key, values in agent_values(bench, stages).items()}
        for key, (run, cfg) in resolved.items():
            if run is not None:
                self.stages[key] = Stage(run)
            else:
                log.warning("stage %s: training (mnist_task, seed %s, as a job)", key, cfg["seed"])
                self.pending[submit("agent", train_stage, cfg, True)] = ("agent", key)
        self.specs = bench["eval"]["task_sets"]
        self.key_of = {spec: agent_key(spec) if agent_key(spec) in resolved else "agent" for spec in self.specs}
        self._submit_ready()

    def _submit_ready(self) -> None:
        if self.key_of[self.specs[0]] not in self.stages:  # every evaluation uses the first agent's pool
            return
        runs = {key: stage.run for key, stage in self.stages.items()}
        for i, spec in enumerate(self.specs):
            if spec not in self.sets and self.key_of[spec] in self.stages:
                self.sets[spec] = None
                self.pending[self.submit("eval", _evaluate_set, self.bench, runs, i, spec, self.out_dir)] = ("eval", spec)
        if self.common is None:
            self.common = False
            self.pending[self.submit("eval", _evaluate_common, self.bench, runs)] = ("common", "common")

    def done(self, future: Future) -> None:
        """Take in a finished job of this queue, then submit what it made possible."""
        kind, key = self.pending.pop(future)
        value, wall = future.result()
        if kind == "agent":
            self.stages[key] = Stage(value, wall)
        elif kind == "eval":
            self.sets[key], self.walls[f"eval[{key}]"] = value, wall
        else:
            self.common, self.walls["eval[common]"] = value, wall
        self._submit_ready()

    def results(self) -> Dict[str, Any]:
        return {**self.common, "task_sets": {spec: self.sets[spec] for spec in self.specs}, "eval_wall_s": self.walls}


def _drain(queues: Sequence[_Queue]) -> None:
    """Wait for the jobs of every queue, handing each finished one to its queue, until none is left."""
    while any(queue.pending for queue in queues):
        owner = {future: queue for queue in queues for future in queue.pending}
        done, _ = wait(owner, return_when=FIRST_COMPLETED)
        for future in done:
            owner[future].done(future)


def train_and_evaluate_all(benches: Sequence[Dict[str, Any]], out_dirs: Sequence[Path]
                           ) -> List[Tuple[Dict[str, Stage], Dict[str, Any]]]:
    """Per benchmark (the seeds of a grid: they share their fit stages), ``(stages, results)`` as
    :func:`benchmarks.mnist_task.train_stages` and ``evaluate`` give them, from one pool of jobs."""
    first = benches[0]
    with job_pool(first, max(2, int(first["parallel_agents"]))) as submit:
        upstream = _upstream_in_jobs if first["launcher"] == "ray" else _upstream_here
        stages = upstream(first, submit)
        queues = [_Queue(bench, stages, submit, out_dir) for bench, out_dir in zip(benches, out_dirs)]
        _drain(queues)
    return [(queue.stages, queue.results()) for queue in queues]

