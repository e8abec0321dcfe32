"""Experiment A rollouts: the RL policy and linear traversals along k_hyp on the same base faces.

    python -m evaluation.face_age RUN_FOLDER [--steps N] [--extents 3,5]

Every base latent of the *evaluation* pool (unseen in training) is run in both directions for
``episode_len`` steps. Scores come from the env's own models (the reward age regressor and the
identity features F): this checks that the agent learned its MDP; the independent judges of the
InterfaceGAN comparison live in ``benchmarks/``. Writes ``rollouts.json`` and ``trajectories.png``
(the policy's episodes from the first four evaluation faces, ascending then descending) into the run folder.
"""
import argparse
import io
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from lightning_modules.runs import atomic_write_bytes, atomic_write_text


@torch.inference_mode()
def rollout(core, act_fn: Callable[[torch.Tensor], torch.Tensor], base_idx_N: torch.Tensor,
            direction_N: torch.Tensor, record: bool = False) -> Dict[str, torch.Tensor]:
    """Run episodes from chosen bases/directions until each ends; N rows of the core, one per episode.

    Returns N-tensors: ``buckets`` (new age buckets reached in the commanded direction),
    ``age_change`` (last age − base age, signed so that + is the commanded direction),
    ``identity_mean`` / ``identity_max`` (I_g over the steps taken), ``steps``, ``left_typical``.
    ``record=True`` adds the trajectories: ``z_NTL`` (T = episode_len; after an episode ends its
    last latent is repeated, the edit's result) and ``valid_NT`` (the steps actually taken).
    """
    n = len(base_idx_N)
    ids = torch.arange(n)
    obs = core.start(ids, base_idx_N, direction_N)
    alive = torch.ones(n, dtype=torch.bool)
    out = {k: torch.zeros(n) for k in ("buckets", "age_change", "identity_sum", "identity_max", "steps")}
    out["left_typical"] = torch.zeros(n, dtype=torch.bool)
    sign = 1.0 - 2.0 * direction_N.float()
    steps = core.mdp.episode_len
    z_NTL = core.pool_PL[torch.as_tensor(base_idx_N).long()].cpu()[:, None, :].repeat(1, steps, 1)
    valid_NT = torch.zeros(n, steps, dtype=torch.bool)
    t = 0
    while alive.any():
        rows = ids[alive]
        next_obs, _, terminated, truncated, info = core.step(act_fn(obs[rows]), rows)
        obs = obs.clone()
        obs[rows] = next_obs
        out["buckets"][rows] += info["hit"].float()
        out["age_change"][rows] = sign[rows] * (info["age"] - info["age_base"])
        out["identity_sum"][rows] += info["identity"]
        out["identity_max"][rows] = torch.maximum(out["identity_max"][rows], info["identity"])
        out["steps"][rows] += 1
        out["left_typical"][rows] |= ~info["in_typical_set"]
        alive[rows] = ~(terminated | truncated)
        if record:
            z_NTL[rows, t:] = next_obs[:, None, :core.latent_dim].cpu()  # held until overwritten
            valid_NT[rows, t] = True
        t += 1
    out["identity_mean"] = out.pop("identity_sum") / out["steps"]
    if record:
        out["z_NTL"], out["valid_NT"] = z_NTL, valid_NT
    return out


STRIP_BASES = 4  # evaluation faces per strip, each run in both directions


def strip_episodes(factory, n_bases: int = STRIP_BASES):
    """``(core, base_idx, direction)`` for a strip: the first ``n_bases`` evaluation faces ascending,
    then the same faces descending, on an evaluation core with one row per episode."""
    n = min(n_bases, len(factory.eval_pool_PL))
    base_idx, direction = torch.arange(n).repeat(2), torch.arange(2).repeat_interleave(n)
    return factory.eval_core(len(base_idx), seed=0), base_idx, direction


@torch.inference_mode()
def trajectory_strip(core, base_idx_N: torch.Tensor, direction_N: torch.Tensor,
                     act_fn: Callable[[torch.Tensor], torch.Tensor], path: Path) -> Path:
    """PNG: one row per episode, the base face then the face after each of the ``episode_len`` steps.

    ``core`` must have at least N rows (e.g. ``factory.eval_core(N, seed)``); after an episode ends
    (all buckets visited or failure) its last face is repeated. Written atomically.
    """
    from torchvision.utils import save_image

    out = rollout(core, act_fn, base_idx_N, direction_N, record=True)
    base = core.pool_PL[torch.as_tensor(base_idx_N).long()].cpu()
    latents = torch.cat([base[:, None], out["z_NTL"]], dim=1)  # N×(T+1)×L
    images = core.nets["generator"](latents.flatten(0, 1).to(core.device)).cpu()
    buf = io.BytesIO()
    save_image((images + 1) / 2, buf, format="png", nrow=latents.shape[1], padding=1, pad_value=1.0)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def linear_policy(core, extent: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """InterfaceGAN's traversal as actions: only w1, sized to move ``extent`` units along ±k_hyp in E_len steps."""
    w1 = extent / (core.mdp.episode_len * (1.0 - core.mdp.inertia))
    if w1 > core.action_bound:
        raise ValueError(f"extent {extent:g} needs w1={w1:.2f} per step, above the action bound {core.action_bound}")

    def act(obs: torch.Tensor) -> torch.Tensor:
        action = torch.zeros(len(obs), core.act_dim)
        action[:, core.latent_dim] = w1
        return action
    return act


def summarize(out: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Means over episodes (and the share of episodes that left the typical set)."""
    return {"buckets": out["buckets"].mean().item(), "age_change": out["age_change"].mean().item(),
            "identity_mean": out["identity_mean"].mean().item(), "identity_max": out["identity_max"].mean().item(),
            "steps": out["steps"].mean().item(), "left_typical_rate": out["left_typical"].float().mean().item()}


def compare(factory, policy_act: Callable, extents: List[float], max_bases: Optional[int] = None) -> Dict[str, Dict]:
    """RL vs linear traversals on every evaluation base, both directions, same cores and steps."""
    n_bases = len(factory.eval_pool_PL) if max_bases is None else min(max_bases, len(factory.eval_pool_PL))
    base_idx = torch.arange(n_bases).repeat(2)
    direction = torch.arange(2).repeat_interleave(n_bases)
    core = factory.eval_core(len(base_idx), seed=0)
    results = {"rl": summarize(rollout(core, policy_act, base_idx, direction))}
    for extent in extents:
        results[f"linear_{extent:g}"] = summarize(rollout(core, linear_policy(core, extent), base_idx, direction))
    results["episodes"] = {"bases": n_bases, "directions": 2, "episode_len": core.mdp.episode_len}
    return results


def main(argv: Optional[List[str]] = None) -> int:
    from configs import load_config
    from configs.schema import RLConfig
    from lightning_modules.runs import run_cli
    from rl.agents import act, load_policy
    from rl.builders import get_env_builder
    from rl.train import SECTIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--extents", default="3,5", help="linear traversal lengths in boundary units")
    parser.add_argument("--max-bases", type=int, default=None)
    args = parser.parse_args(argv)

    def job() -> Path:
        torch.set_num_threads(1)
        cfg = load_config(args.run_dir, [], schema=RLConfig, sections=SECTIONS)
        factory = get_env_builder(cfg["env"]["name"])(**{k: v for k, v in cfg["env"].items() if k != "name"})
        policy = load_policy(args.run_dir)
        results = compare(factory, lambda obs: act(policy, obs), [float(e) for e in args.extents.split(",")],
                          args.max_bases)
        path = Path(args.run_dir) / "rollouts.json"
        atomic_write_text(path, json.dumps(results, indent=2))
        # the strips rl.train writes during training, for the saved policy
        strip = trajectory_strip(*strip_episodes(factory), lambda obs: act(policy, obs),
                                 Path(args.run_dir) / "trajectories.png")
        print(f"trajectory strip (first half of the rows ascending, then descending): {strip}")
        return path
    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
