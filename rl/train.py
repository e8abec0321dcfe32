"""Train a Tianshou agent in one of the latent environments.

    python -m rl.train [NAME_OR_YAML] [key=value ...]

NAME is a file in ``configs/`` (default: ``mnist_task``), a .yaml path or an earlier run folder.
Writes ``runs/<name>/<stamp>/`` with ``config.yaml``, ``policy.pt`` (best test score),
TensorBoard events and ``train_summary.json``; prints that folder.
"""
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from configs import load_config
from configs.schema import RLConfig
from lightning_modules.runs import atomic_write_text, new_run_dir, run_cli, save_run_config
from rl.agents import DEFAULTS, build_algorithm, seed_everything, train
from rl.builders import get_env_builder
from rl.envs.views import BatchedVectorEnv, make_dummy_vector_env

log = logging.getLogger("rl.train")


def _agent_defaults(name: str) -> Dict[str, Any]:
    if name not in DEFAULTS:
        raise KeyError(f"unknown agent '{name}'; expected one of {sorted(DEFAULTS)}")
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


def train_agent(cfg: Dict[str, Any]) -> Path:
    """Train from a resolved :class:`configs.schema.RLConfig` dict; return the run folder."""
    torch.set_num_threads(cfg["num_threads"])
    seed_everything(cfg["seed"])
    env_kwargs = {k: v for k, v in cfg["env"].items() if k != "name"}
    make_core = get_env_builder(cfg["env"]["name"])(**env_kwargs)
    loop = dict(cfg["train"])
    train_envs, test_envs = make_envs(make_core, loop, cfg["seed"])
    probe = make_core(1, 0)
    seed_everything(cfg["seed"])  # the nets' initial weights depend on the seed alone
    agent = {k: v for k, v in cfg["agent"].items() if k != "name"}
    algorithm = build_algorithm(cfg["agent"]["name"], probe.obs_dim, probe.act_dim, probe.action_bound, **agent)
    run_dir = new_run_dir(cfg["out_dir"], cfg["name"])
    save_run_config(cfg, run_dir)
    log.info("run folder: %s", run_dir)
    start = time.time()
    vector = loop.pop("vector")
    del loop["num_envs"], loop["test_envs"]  # consumed by make_envs
    stats = train(algorithm, train_envs, test_envs, run_dir, seed=cfg["seed"], num_threads=cfg["num_threads"], **loop)
    summary = {"best_reward": float(stats.best_reward), "best_reward_std": float(stats.best_reward_std),
               "env_steps": int(stats.train_step), "wall_s": round(time.time() - start, 1), "vector": vector}
    atomic_write_text(run_dir / "train_summary.json", json.dumps(summary, indent=2))
    return run_dir


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__ + "\nexamples:\n  python -m rl.train mnist_task train.total_steps=20000 agent.name=ppo\n")
        return 0
    name = args.pop(0) if args and "=" not in args[0] else "mnist_task"
    return run_cli(lambda: train_agent(load_config(name, args, schema=RLConfig, sections=SECTIONS)))


if __name__ == "__main__":
    sys.exit(main())
