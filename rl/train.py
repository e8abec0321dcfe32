"""Train an agent of the agent table (``rl.agents.AGENTS``) in one of the latent environments.

    python -m rl.train [NAME_OR_YAML] [key=value ...]

NAME is a file in ``configs/`` (default: ``mnist_task``), a .yaml path or an earlier run folder.
Writes ``runs/<name>/<stamp>/`` with ``config.yaml`` (values the env calibrated included),
``policy.pt`` (best test score), ``train_state.pt`` (after every epoch), ``curve.json``,
TensorBoard events and ``train_summary.json``; prints that folder.

    python -m rl.train resume=runs/mnist_task/<stamp>

continues an interrupted run (even after kill -9) in its own folder from its last
``train_state.pt``, with the run's saved config (overrides must not change it; ``device=`` may).

``device=cpu|cuda|auto`` (default auto: the GPU when torch sees one) is where the env cores' networks and
the agent's run; ``cuda`` without a GPU is an error before anything starts.
"""
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from configs import load_config
from configs.loader import as_dataclass, with_section_defaults
from configs.schema import RLConfig, RLLoopConfig, with_rl_defaults
from rl.agents import AGENTS, POLICY_FILE, act, agent_spec, build_algorithm, make_params, prepare, save_policy
from rl.builders import factory_on, get_env_builder
from rl.envs.views import BatchedVectorEnv, make_dummy_vector_env
from rl.loop import TRAIN_STATE_FILE, load_train_state, split_budget, train
from utils.cli import config_name, run_cli, wants_help
from utils.devices import resolve_device
from utils.errors import Interrupted, UserError
from utils.io import atomic_write_text
from utils.runs import (
    check_output_dir,
    config_changes,
    latest_run,
    new_run_dir,
    save_run_config,
)
from utils.seeding import seed_everything

log = logging.getLogger("rl.train")
SECTIONS = {"env": get_env_builder, "agent": lambda name: agent_spec(name).params}
SUMMARY_FILE = "train_summary.json"


def make_envs(make_core, loop: RLLoopConfig, seed: int):
    """(train envs, test envs) as Tianshou vector envs over the batched core (or DummyVectorEnv)."""
    if loop.vector == "batched":
        return BatchedVectorEnv(make_core(loop.num_envs, seed)), BatchedVectorEnv(make_core(loop.test_envs, seed + 1))
    return (make_dummy_vector_env(make_core, loop.num_envs, seed),
            make_dummy_vector_env(make_core, loop.test_envs, seed + 1))


def build_env(env: Dict[str, Any], device: Optional[torch.device] = None):
    """The env section's builder called with its keys: ``make_core(num_envs, seed)``, its cores on ``device``
    (None: where the builder put them, the CPU). The builder loads and prepares on the CPU; then the
    factory's pool and networks move (:func:`rl.builders.factory_on`)."""
    make_core = get_env_builder(env["name"])(**{k: v for k, v in env.items() if k != "name"})
    return make_core if device is None else factory_on(make_core, device, f"env {env['name']}")


def _resume_folder(cfg: Dict[str, Any]) -> Path:
    run_dir = latest_run(Path(cfg["resume"]))
    if (run_dir / SUMMARY_FILE).is_file():
        raise UserError(f"cannot resume '{run_dir}': it finished ({SUMMARY_FILE} exists)")
    load_train_state(run_dir)  # missing or corrupt state: fail before building anything
    # keys added after the run was saved (e.g. `device`) count as their defaults; the device may change (a run
    # started on a GPU node can go on elsewhere: the training state is device-free), the computation may not
    saved = with_section_defaults(with_rl_defaults(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"),
                                                                          resolve=True)), SECTIONS)
    cfg_now = with_rl_defaults(cfg)
    changed = config_changes(saved, cfg_now, ("resume", "out_dir", "device"))
    if saved["device"] != cfg_now["device"]:
        log.warning("resuming %s with device=%s; it started with device=%s (its config.yaml keeps that)",
                    run_dir, cfg_now["device"], saved["device"])
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise UserError(f"cannot resume '{run_dir}' with a different config ({shown} differ): "
                        f"run `python -m rl.train resume={run_dir}` without overrides")
    check_output_dir(run_dir, "resume")
    return run_dir


def _record_calibration(cfg: Dict[str, Any], make_core) -> None:
    # values the env computed (e.g. P1/P2 from 'auto') go into the run's config: it repeats from its folder
    for key, value in getattr(make_core, "calibrated", {}).items():
        *parents, leaf = key.split(".")
        node = cfg["env"]
        for part in parents:
            node = node[part]
        node[leaf] = float(value)
        cfg["calibrated"] = sorted({*cfg["calibrated"], f"env.{key}"})


def _strip_hook(make_core, run_dir: Path, every: int):
    """An epoch hook writing ``strips/epoch_NNN.png`` (trajectories of the first evaluation faces,
    both directions, current policy) every ``every`` epochs; None for envs without an evaluation pool."""
    if every < 0:
        raise UserError(f"train.strip_every={every} invalid: expected an int >= 0 (0 = no strips)")
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


def _build_agent(cfg: Dict[str, Any], make_core, device: torch.device):
    probe = make_core(1, 0)
    seed_everything(cfg["seed"])  # the nets' initial weights depend on the seed alone
    agent = {k: v for k, v in cfg["agent"].items() if k != "name"}
    if hasattr(make_core, "agent_hparams"):  # an env may propose the policy's start (experiment A's warm start)
        agent = make_core.agent_hparams(cfg["agent"]["name"], agent)
    return build_algorithm(cfg["agent"]["name"], probe.obs_dim, probe.act_dim, probe.action_bound, device=device,
                           **agent)


def train_agent(cfg: Dict[str, Any]) -> Path:
    """Train from a resolved :class:`configs.schema.RLConfig` dict; return the run folder."""
    device = resolve_device(cfg.get("device", "auto"), announce="the env cores, the agent and its evaluation")
    run_dir = _resume_folder(cfg) if cfg["resume"] else None
    if run_dir is None:
        check_output_dir(cfg["out_dir"], "out_dir")  # before the env is built
    make_params(cfg["agent"]["name"], {k: v for k, v in cfg["agent"].items() if k != "name"})  # bad values fail first
    torch.set_num_threads(cfg["num_threads"])
    seed_everything(cfg["seed"])
    loop = as_dataclass(RLLoopConfig, cfg["train"])
    if loop.epochs > 0:  # a budget too small for RL fails before the env loads
        split_budget(loop, agent_spec(cfg["agent"]["name"]).off_policy, loop.num_envs)
    make_core = build_env(cfg["env"], device)
    train_envs, test_envs = make_envs(make_core, loop, cfg["seed"])
    algorithm = _build_agent(cfg, make_core, device)
    resume = run_dir is not None
    start, pretrained = time.time(), None
    if not resume:
        prepare(algorithm)
        if hasattr(make_core, "pretrain"):  # an env may train the policy before RL (experiment A's gradient start)
            pretrained = make_core.pretrain(algorithm, cfg["seed"])
        _record_calibration(cfg, make_core)
        run_dir = new_run_dir(cfg["out_dir"], cfg["name"])
        save_run_config(cfg, run_dir)
    log.info("run folder: %s", run_dir)
    if loop.epochs == 0:  # no RL: the run keeps its starting policy
        save_policy(algorithm, run_dir / POLICY_FILE)
        log.warning("train.epochs=0: no RL; the starting policy is saved as %s", run_dir / POLICY_FILE)
        summary = {"best_reward": None, "env_steps": 0, "epochs": 0, "pretrain": pretrained,
                   "wall_s": round(time.time() - start, 1), "device": str(device)}
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        return run_dir
    start = time.time()
    try:
        stats = train(algorithm, train_envs, test_envs, run_dir, loop, seed=cfg["seed"], num_threads=cfg["num_threads"],
                      resume=resume, epoch_hook=_strip_hook(make_core, run_dir, loop.strip_every))
    except BaseException as err:
        if not resume and not (run_dir / TRAIN_STATE_FILE).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # no epoch finished: nothing worth keeping
        elif isinstance(err, Interrupted):
            err.notes.append(f"run {run_dir} kept: continue it with python -m rl.train resume={run_dir}")
        raise
    summary = {**stats, "wall_s": round(time.time() - start, 1), "vector": loop.vector, "device": str(device),
               **({"pretrain": pretrained} if pretrained is not None else {})}
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return run_dir


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if wants_help(args):
        agents = "\n".join(f"  {name:13s} {spec.doc}" for name, spec in AGENTS.items())
        print(__doc__ + f"\nagents (agent.name=...):\n{agents}\n\nexamples:\n"
              "  python -m rl.train mnist_task train.total_steps=20000 agent.name=ppo\n")
        return 0
    return run_cli(lambda: train_agent(load_config(*config_name(args, "mnist_task"), schema=RLConfig,
                                                   sections=SECTIONS)))


if __name__ == "__main__":
    sys.exit(main())
