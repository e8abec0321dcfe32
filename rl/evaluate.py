"""Experiment A: a trained policy's episodes against linear traversals along the age boundary.

    python -m rl.evaluate RUN_FOLDER [--extents 1,2,3,4,5] [--max-bases N] [--gradient-direction]

Every base latent of the run's *evaluation* pool (unseen in training) is run in both directions for
``episode_len`` steps, scored by the env's own models (the reward age regressor and the identity
features F): this checks that the agent learned its MDP; the independent judges of the InterfaceGAN
comparison live in ``benchmarks/``. Prints one row per method and the matched-linear verdict; writes
``rollouts.json`` and ``trajectories.png`` (the policy's episodes from the first four evaluation faces,
ascending then descending) into the run folder.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import torch

from configs import load_config
from configs.schema import RLConfig
from evaluation.face_age import (
    compare,
    direction_curve,
    gradient_direction,
    strip_episodes,
    table_lines,
    trajectory_strip,
)
from rl.agents import act, load_policy
from rl.train import SECTIONS, build_env
from utils.cli import run_cli
from utils.devices import DEVICES, resolve_device
from utils.errors import UserError
from utils.io import atomic_write_text


def _device(given: Optional[str], saved: str) -> torch.device:
    # --device, else the run's own `device`; a saved 'cuda' on a machine without a GPU says how to go on
    announce = "the env's networks and the policy"
    if given is not None:
        return resolve_device(given, key="--device", announce=announce)
    try:
        return resolve_device(saved, key="device", announce=announce)
    except UserError as err:
        raise UserError(f"{err} (the run's config; pass --device cpu to evaluate here)") from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--extents", default="1,2,3,4,5", help="linear traversal lengths in boundary units")
    parser.add_argument("--max-bases", type=int, default=None)
    parser.add_argument("--gradient-direction", action="store_true",
                        help="also fit one direction per command by gradient through the networks (a non-RL "
                             "reference, see gradient_direction) and run it at the same extents")
    parser.add_argument("--device", default=None, choices=DEVICES,
                        help="where the env's networks and the policy run (default: the run's config `device`)")
    args = parser.parse_args(argv)

    def job() -> Path:
        torch.set_num_threads(1)
        cfg = load_config(args.run_dir, [], schema=RLConfig, sections=SECTIONS)
        device = _device(args.device, cfg["device"])
        factory = build_env(cfg["env"], device)
        policy = load_policy(args.run_dir, map_location=device)
        extents = [float(e) for e in args.extents.split(",")]
        results = compare(factory, lambda obs: act(policy, obs), extents, args.max_bases)
        if args.gradient_direction:
            with torch.inference_mode(False):
                directions = {c: gradient_direction(factory.base, c) for c in (0, 1)}
            results["gradient_direction"] = {
                "cosine_to_k_hyp": {c: abs(float(d @ factory.boundary_L)) for c, d in directions.items()},
                **direction_curve(factory, directions, extents, args.max_bases)}
        path = Path(args.run_dir) / "rollouts.json"
        atomic_write_text(path, json.dumps(results, indent=2))
        print("\n".join(table_lines(results)))
        print(f"versus linear: {results['versus_linear']}")
        # the strips rl.train writes during training, for the saved policy
        strip = trajectory_strip(*strip_episodes(factory), lambda obs: act(policy, obs),
                                 Path(args.run_dir) / "trajectories.png")
        print(f"trajectory strip (first half of the rows ascending, then descending): {strip}")
        return path
    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
