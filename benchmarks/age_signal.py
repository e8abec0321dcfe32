"""Experiment A's age-signal check on the command line (the figures: ``evaluation/age_signal.py``).

    python -m benchmarks.age_signal CHECKPOINT_OR_RUN [...] [--samples 2000] [--extent 3] [--judge-views 1]
        [--gradient-samples 256] [--gradient-steps 40] [--gradient-lr 0.1] [--model-views 1] [--identity]
        [--attribute age] [--photos DIR [--photo-count 1000]] [--generator dcgan_digiface]
        [--out benchmarks/results/age_signal.json]

Per age regressor given: r of its ages and the independent judge's on generated faces, the share of its
own InterfaceGAN edit (``--extent`` units older and younger) that the judge sees, and the same share for
per-face edits of that length that follow the regressor's gradient (on the first ``--gradient-samples``
faces; 0 skips them; ``--gradient-steps`` Adam steps at ``--gradient-lr`` each). ``--identity`` also reads
what each edit costs on those faces: the dlib identity cosine to the face's own (mean, 5th percentile) and the
share whose judged gender flipped. ``--model-views K`` > 1 makes those edits climb the model read as the mean
over K random views of each face (mirrored, shifted, resampled: ``env.age_views``'s views), not over the face
alone.
``--attribute gender`` reads gender classifiers the same way, with P(female) in place of the age on both sides
(the judge's gender net; the "age" keys of the JSON then hold P(female)). ``--photos DIR`` (a UTKFace folder) also
reads each model and the judge on the held-out split of those photos (the first ``--photo-count`` of it; the split
of ``configs/age_regressor.yaml``'s data, so the suite's models never trained on them): r of each with the labels
and with each other, under ``photos`` in the JSON. ``--generator`` makes the faces: a generator name or a face GAN
run (``runs/face_gan``), as ``env.generator``. Prints a table on stderr, writes the figures as JSON to ``--out``
and its path on stdout.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import torch

from datamodules.faces import UTKFaceDataModule
from evaluation.age_signal import age_signal, photo_agreement
from evaluation.judges import build_judge
from lightning_modules.checkpoints import load_module
from lightning_modules.nets.generators import build_generator
from rl.builders.face_age_models import RandomViews, ViewAveragedAge
from utils.cli import run_cli
from utils.errors import UserError
from utils.io import atomic_write_text
from utils.runs import check_output_file


def _edit_model(model, args):
    """What the per-face edits climb: the model itself, or its mean over ``--model-views`` seeded random views."""
    return model if args.model_views == 1 else ViewAveragedAge(model, RandomViews(args.model_views, seed=args.seed))


def _held_out_photos(root: str, count: int, attribute: str):
    """(images N×3×64×64 in [-1, 1], labels N) of the first ``count`` photos of the held-out split of a UTKFace
    folder, split as ``configs/age_regressor.yaml`` splits it (the test fraction of seed 0)."""
    data = UTKFaceDataModule(root=root, cache=False, hflip=False)
    data.setup("test")
    test = data.splits["test"]
    items = [test[i] for i in range(min(count, len(test)))]
    key = "age" if attribute == "age" else "gender"
    return torch.stack([it["image"] for it in items]), torch.stack([torch.as_tensor(it[key]) for it in items])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="age regressor (or gender classifier) checkpoints or run folders")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--extent", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge-views", type=int, default=1,
                        help="views of each face the age judge averages over (1, 2 or 4; see eval.age_gender_views)")
    parser.add_argument("--gradient-samples", type=int, default=256,
                        help="faces edited by gradient through each model (0: only its linear boundary)")
    parser.add_argument("--gradient-steps", type=int, default=40, help="Adam steps of each per-face edit")
    parser.add_argument("--gradient-lr", type=float, default=0.1, help="learning rate of the per-face edits")
    parser.add_argument("--identity", action="store_true",
                        help="also the dlib identity cosine and the judged gender flips of each edit (slower)")
    parser.add_argument("--model-views", type=int, default=1,
                        help="views of each face the model averages over while the per-face edits climb it "
                             "(1: the face alone; as env.age_views)")
    parser.add_argument("--attribute", choices=("age", "gender"), default="age",
                        help="age: age regressors against the judge's age; gender: gender classifiers' P(female) "
                             "against the judge's")
    parser.add_argument("--photos", default=None,
                        help="a UTKFace folder: also read the models and the judge on its held-out photos")
    parser.add_argument("--photo-count", type=int, default=1000, help="held-out photos read with --photos")
    parser.add_argument("--generator", default="dcgan_digiface",
                        help="the generator of the faces: a name or a face GAN run/checkpoint, as env.generator")
    parser.add_argument("--out", default="benchmarks/results/age_signal.json")
    args = parser.parse_args(argv)

    def job() -> Path:
        if args.samples < 100 or args.extent <= 0:
            raise UserError(f"--samples={args.samples} / --extent={args.extent} invalid: expected >= 100 and > 0")
        if args.gradient_samples < 0:
            raise UserError(f"--gradient-samples={args.gradient_samples} invalid: expected an int >= 0")
        if args.model_views < 1:
            raise UserError(f"--model-views={args.model_views} invalid: expected an int >= 1")
        if args.gradient_steps < 1 or not args.gradient_lr > 0:
            raise UserError(f"--gradient-steps={args.gradient_steps} / --gradient-lr={args.gradient_lr} invalid: "
                            "expected an int >= 1 and a number > 0")
        if args.identity and args.attribute != "age":
            raise UserError("--identity reads age edits: it needs --attribute age")
        if args.photo_count < 10:
            raise UserError(f"--photo-count={args.photo_count} invalid: expected an int >= 10")
        photos = _held_out_photos(args.photos, args.photo_count, args.attribute) if args.photos else None
        check_output_file(args.out, "--out")
        age_gender = build_judge("age_gender", views=args.judge_views)  # a bad --judge-views fails here
        judge = age_gender.ages if args.attribute == "age" else age_gender.p_female
        costs = {"identity": build_judge("dlib").embed, "p_female": age_gender.p_female} if args.identity else None
        out = Path(args.out)
        kind = "age_regressor" if args.attribute == "age" else "gender_classifier"
        models = {m: load_module(m, kind) for m in args.models}  # all load before any work
        generator = build_generator(args.generator)
        if args.attribute == "gender":  # P(female), differentiable for the per-face edits
            models = {m: (lambda img, net=net: net(img).softmax(dim=1)[:, 1]) for m, net in models.items()}
        torch.set_num_threads(1)
        rows = {m: {**age_signal(generator, model, judge, args.samples, args.extent, args.seed,
                                 gradient_samples=args.gradient_samples, edit_model=_edit_model(model, args),
                                 gradient_steps=args.gradient_steps, gradient_lr=args.gradient_lr, costs=costs),
                    "model_views": args.model_views, "generator": args.generator}
                for m, model in models.items()}
        if photos is not None:
            for m, figures in photo_agreement(models, judge, *photos).items():
                rows[m]["photos"] = figures
        edits = ("", "gradient_") if args.gradient_samples else ("",)
        gradient_label = "per-face gradient" + (f" ({args.model_views} views)" if args.model_views > 1 else "")
        name, unit = ("age", "y") if args.attribute == "age" else ("P(female)", "")
        cost_head = " identity mean | identity p5 | flips |" if costs else ""
        print(f"| {args.attribute} model | r {name} | edit | model {name} change{unit and f' ({unit})'} | "
              f"judge {name} change | transfer | r changes |{cost_head}", file=sys.stderr)
        for m, r in rows.items():
            for e in edits:
                digits = 2 if args.attribute == "age" else 3
                print(f"| {m} | {r['r_ages']:.3f} | {gradient_label if e else 'linear boundary'} | "
                      f"{r[e + 'model_change']:.{digits}f} | "
                      f"{r[e + 'judge_change']:.{digits}f} ± {r[e + 'judge_change_se']:.{digits}f} | "
                      f"{r[e + 'transfer']:.3f} | {r[e + 'r_changes']:.3f} |"
                      + (f" {r[e + 'identity_mean']:.4f} | {r[e + 'identity_p5']:.4f} | {r[e + 'flip_rate']:.3f} |"
                         if costs else ""), file=sys.stderr)
        if photos is not None:
            print(f"| {args.attribute} model | held-out photos | r model-label | r judge-label | r model-judge "
                  f"| model MAE | judge MAE |", file=sys.stderr)
            for m, r in rows.items():
                p = r["photos"]
                print(f"| {m} | {p['photos']} | {p['r_label']:.3f} | {p['judge_r_label']:.3f} | {p['r_judge']:.3f} | "
                      f"{p['mae']:.3f} | {p['judge_mae']:.3f} |", file=sys.stderr)
        atomic_write_text(out, json.dumps(rows, indent=2))
        return out

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
