"""Train a Tianshou agent in one of the latent environments (``agent.name=transform_pg``: experiment C's
own REINFORCE loop, :mod:`rl.transform_pg`).

    python -m rl.train [NAME_OR_YAML] [key=value ...]

NAME is a file in ``configs/`` (default: ``mnist_task``), a .yaml path or an earlier run folder.
Writes ``runs/<name>/<stamp>/`` with ``config.yaml``, ``policy.pt`` (best test score),
``train_state.pt`` (after every epoch), TensorBoard events and ``train_summary.json``; prints
that folder.

    python -m rl.train resume=runs/mnist_task/<stamp>

continues an interrupted run (even after kill -9) in its own folder from its last
``train_state.pt``, with the run's saved config (overrides must not change it).
"""
import json
import logging
import shutil
import sys
import time
from importlib import import_module
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from configs import load_config
from configs.schema import RLConfig
from lightning_modules.runs import atomic_write_text, latest_run, new_run_dir, run_cli, save_run_config
from rl.agents import DEFAULTS, TRAIN_STATE_FILE, act, build_algorithm, load_train_state, seed_everything, train
from rl.builders import get_env_builder
from rl.envs.views import BatchedVectorEnv, make_dummy_vector_env

log = logging.getLogger("rl.train")


# Agents with a training loop of their own instead of a Tianshou algorithm: name -> module exposing
# ``Agent`` (its signature is the agent section) and ``train_run(cfg) -> run folder``.
OWN_LOOP = {"transform_pg": "rl.transform_pg"}


def _agent_defaults(name: str) -> Any:
    if name in OWN_LOOP:
        return import_module(OWN_LOOP[name]).Agent
    if name not in DEFAULTS:
        raise KeyError(f"unknown agent '{name}'; expected one of {sorted([*DEFAULTS, *OWN_LOOP])}")
    return DEFAULTS[name]


SECTIONS = {"env": get_env_builder, "agent": _agent_defaults}


def make_envs(make_core, loop: Dict[str, Any], seed: int):
    """(train envs, test envs) as Tianshou vector envs over the batched core (or DummyVectorEnv)."""
    if loop["vector"] == "batched":
        return BatchedVectorEnv(make_core(loop["num_envs"], seed)), BatchedVectorEnv(make_core(loop["test_envs"], seed + 1))
    if loop["vector"] == "dummy":
        return (make_dummy_vector_env(make_core, loop["num_envs"], seed),
                make_dummy_vector_env(make_core, loop["test_envs"], seed + 1))
    raise ValueError(f"train.vector='{loop['vector']}' is not allowed; expected 'batched' or 'dummy'")


def _resume_folder(cfg: Dict[str, Any]) -> Path:
    run_dir = latest_run(Path(cfg["resume"]))
    if (run_dir / "train_summary.json").is_file():
        raise ValueError(f"cannot resume '{run_dir}': it finished (train_summary.json exists)")
    load_train_state(run_dir)  # missing or corrupt state: fail before building anything
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    drop = ("resume", "out_dir")
    changed = sorted(k for k in set(saved) | set(cfg) if k not in drop and saved.get(k) != cfg.get(k))
    if changed:
        raise ValueError(f"cannot resume '{run_dir}' with a different config (sections {changed} differ): "
                         f"run `python -m rl.train resume={run_dir}` without overrides")
    return run_dir


def _strip_hook(make_core, run_dir: Path, every: int):
    """An epoch hook writing ``strips/epoch_NNN.png`` (trajectories of the first evaluation faces,
    both directions, current policy) every ``every`` epochs; None for envs without an evaluation pool."""
    if every < 0:
        raise ValueError(f"train.strip_every={every} invalid: expected an int >= 0 (0 = no strips)")
    if every == 0 or not hasattr(make_core, "eval_core"):
        return None
    from evaluation.face_age import strip_episodes, trajectory_strip

    episodes = strip_episodes(make_core)

    def hook(algorithm, epoch: int) -> None:
        if epoch % every == 0:
            path = trajectory_strip(*episodes, lambda obs: act(algorithm, obs),
                                    run_dir / "strips" / f"epoch_{epoch:03d}.png")
            log.info("trajectory strip: %s (first half of the rows ascending, then descending)", path)
    return hook


def train_agent(cfg: Dict[str, Any]) -> Path:
    """Train from a resolved :class:`configs.schema.RLConfig` dict; return the run folder."""
    if cfg["agent"]["name"] in OWN_LOOP:
        return import_module(OWN_LOOP[cfg["agent"]["name"]]).train_run(cfg)
    run_dir = _resume_folder(cfg) if cfg["resume"] else None
    torch.set_num_threads(cfg["num_threads"])
    seed_everything(cfg["seed"])
    env_kwargs = {k: v for k, v in cfg["env"].items() if k != "name"}
    make_core = get_env_builder(cfg["env"]["name"])(**env_kwargs)
    loop = dict(cfg["train"])
    train_envs, test_envs = make_envs(make_core, loop, cfg["seed"])
    probe = make_core(1, 0)
    seed_everything(cfg["seed"])  # the nets' initial weights depend on the seed alone
    agent = {k: v for k, v in cfg["agent"].items() if k != "name"}
    if hasattr(make_core, "agent_hparams"):  # an env may propose the policy's start (experiment A's warm start)
        agent = make_core.agent_hparams(cfg["agent"]["name"], agent)
    algorithm = build_algorithm(cfg["agent"]["name"], probe.obs_dim, probe.act_dim, probe.action_bound, **agent)
    resume = run_dir is not None
    if not resume:
        run_dir = new_run_dir(cfg["out_dir"], cfg["name"])
        save_run_config(cfg, run_dir)
    log.info("run folder: %s", run_dir)
    start = time.time()
    vector = loop.pop("vector")
    del loop["num_envs"], loop["test_envs"]  # consumed by make_envs
    hook = _strip_hook(make_core, run_dir, loop.pop("strip_every"))
    try:
        stats = train(algorithm, train_envs, test_envs, run_dir, seed=cfg["seed"], num_threads=cfg["num_threads"],
                      resume=resume, epoch_hook=hook, **loop)
    except BaseException:
        if not resume and not (run_dir / TRAIN_STATE_FILE).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # no epoch finished: nothing worth keeping
        raise
    summary = {**stats, "wall_s": round(time.time() - start, 1), "vector": vector}
    atomic_write_text(run_dir / "train_summary.json", json.dumps(summary, indent=2))
    return run_dir


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__ + "\nexamples:\n  python -m rl.train mnist_task train.total_steps=20000 agent.name=ppo\n")
        return 0
    if args and "=" not in args[0]:
        name = args.pop(0)
    else:  # `resume=RUN` alone continues that run with its own saved config
        resume = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
        name = str(latest_run(Path(resume[-1]))) if resume and Path(resume[-1]).exists() else "mnist_task"
    return run_cli(lambda: train_agent(load_config(name, args, schema=RLConfig, sections=SECTIONS)))


if __name__ == "__main__":
    sys.exit(main())
