"""Matched trade-off curves: does an editor beat a family of linear edits at the same judged age change?

A bigger edit ages a face more and changes it more, so one editor row against one baseline row says
little: the editor may simply move less. Here a baseline family (InterfaceGAN at several extents) gives
a curve, figure against judged age change, and an editor's figure is compared with that curve
interpolated at the editor's own judged age change.

Per method the inputs are per trajectory: its base face (the resampling unit), its judged age change
(+ = the commanded direction), whether the judged gender flipped at any step, and the identity cosine of
every step taken to its base. Figures: ``age_change`` (mean), ``id_mean``, ``id_p5`` (5th percentile),
``id_min`` (over every step taken) and ``flip_rate``.

Standard errors: a bootstrap over base faces, every method resampled on the same bases in each replicate
(so shared base-to-base variation cancels in the differences), plus, for an editor with several training
seeds, the spread between its seeds (std / sqrt(seeds)); the two are added in quadrature.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

FIGURES = ("age_change", "id_mean", "id_p5", "id_min", "flip_rate")
# the figures a verdict is taken on, with +1 where higher is better and -1 where lower is better
VERDICT_FIGURES = {"id_mean": 1, "id_p5": 1, "flip_rate": -1}


@dataclass
class Scored:
    """One method's judged trajectories: N trajectories of T steps."""

    base_N: torch.Tensor     # int64, the base face of each trajectory (trajectories of one base resample together)
    age_N: torch.Tensor      # judged age change, last step − base, + in the commanded direction
    flip_N: torch.Tensor     # bool, judged gender differs from the base's at some step
    cos_NT: torch.Tensor     # identity cosine of each step to its base
    valid_NT: torch.Tensor   # bool, the steps the episode took

    def __post_init__(self):
        n = len(self.base_N)
        if not (len(self.age_N) == len(self.flip_N) == n and self.cos_NT.shape == self.valid_NT.shape
                and len(self.cos_NT) == n and n > 0):
            raise ValueError(f"Scored: expected N base ids, ages and flips and N×T cosines and valid steps, got "
                             f"{len(self.base_N)}, {len(self.age_N)}, {len(self.flip_N)}, {tuple(self.cos_NT.shape)}, "
                             f"{tuple(self.valid_NT.shape)}")
        if not self.valid_NT.any(1).all():
            raise ValueError("Scored: every trajectory needs at least one step taken")


def figures(s: Scored, rows: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """The method's figures over ``rows`` (trajectory indices, repeats allowed; None: all)."""
    if rows is not None:
        s = Scored(s.base_N[rows], s.age_N[rows], s.flip_N[rows], s.cos_NT[rows], s.valid_NT[rows])
    cos = s.cos_NT[s.valid_NT].double()
    return {"age_change": s.age_N.double().mean().item(), "id_mean": cos.mean().item(),
            "id_p5": torch.quantile(cos, 0.05).item(), "id_min": cos.min().item(),
            "flip_rate": s.flip_N.double().mean().item()}


def _rows_by_base(methods: Dict[str, Scored]) -> Dict[str, torch.Tensor]:
    """name -> B×D trajectory rows of each base (the same B bases, each D times, in every method)."""
    ref = None
    out = {}
    for name, s in methods.items():
        ids, counts = s.base_N.unique(return_counts=True)
        if not bool((counts == counts[0]).all()):
            raise ValueError(f"method {name}: every base needs the same number of trajectories, got {counts.tolist()}")
        if ref is None:
            ref = ids
        elif not torch.equal(ids, ref):
            raise ValueError(f"method {name} was run on other bases than {next(iter(methods))}")
        out[name] = s.base_N.argsort(stable=True).reshape(len(ids), int(counts[0]))
    return out


def bootstrap(methods: Dict[str, Scored], n_boot: int, seed: int = 0) -> Tuple[Dict, Dict]:
    """(point figures, replicate figures): name -> figure -> float, and name -> figure -> n_boot tensor.

    Each replicate draws the bases with replacement once and evaluates every method on them.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot} invalid: expected an int >= 2")
    rows = _rows_by_base(methods)
    n_bases = len(next(iter(rows.values())))
    rng = torch.Generator().manual_seed(seed)
    point = {name: figures(s) for name, s in methods.items()}
    reps = {name: {f: torch.empty(n_boot, dtype=torch.float64) for f in FIGURES} for name in methods}
    for b in range(n_boot):
        pick = torch.randint(n_bases, (n_bases,), generator=rng)
        for name, s in methods.items():
            for f, v in figures(s, rows[name][pick].flatten()).items():
                reps[name][f][b] = v
    return point, reps


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The piecewise-linear curve through (xs[i], ys[i]), in the given order (by extent), at ``x``: the first
    segment whose x-range holds ``x``; nan when none does (no extrapolation)."""
    for i in range(len(xs) - 1):
        x0, x1 = xs[i], xs[i + 1]
        if min(x0, x1) <= x <= max(x0, x1):
            w = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return ys[i] + w * (ys[i + 1] - ys[i])
    return math.nan


def matched(editor: List[str], curve: List[str], point: Dict, reps: Dict) -> Dict[str, object]:
    """An editor (its seeds' method names) against a baseline curve (method names in extent order).

    Each seed is compared at its own judged age change; the difference is averaged over seeds. Returns the
    editor's mean age change with its standard error, whether it lies on the curve (``matched``, and the share of
    bootstrap replicates where it does not), and per figure the editor's value, the interpolated baseline, the
    difference (editor − baseline), its standard error (``se``: bases and seeds; ``se_bases``, ``se_seeds``) and
    ``z`` = difference / se.
    """
    out: Dict[str, object] = {"seeds": len(editor)}
    ages = torch.tensor([point[e]["age_change"] for e in editor], dtype=torch.float64)
    age_reps = torch.stack([reps[e]["age_change"] for e in editor]).mean(0)
    out["age_change"], out["age_change_se"] = ages.mean().item(), _se(age_reps, ages)
    n_boot = len(age_reps)
    lost = torch.zeros(n_boot, dtype=torch.bool)
    for fig in FIGURES[1:]:
        diffs, base_vals = [], []
        rep_diffs = torch.zeros(n_boot, dtype=torch.float64)
        for e in editor:
            y = interpolate([point[c]["age_change"] for c in curve], [point[c][fig] for c in curve],
                            point[e]["age_change"])
            diffs.append(point[e][fig] - y)
            base_vals.append(y)
            for b in range(n_boot):
                yb = interpolate([reps[c]["age_change"][b].item() for c in curve],
                                 [reps[c][fig][b].item() for c in curve], reps[e]["age_change"][b].item())
                rep_diffs[b] += (reps[e][fig][b].item() - yb) / len(editor)
        lost |= rep_diffs.isnan()
        d = torch.tensor(diffs, dtype=torch.float64)
        se_bases = rep_diffs[~rep_diffs.isnan()].std().item() if (~rep_diffs.isnan()).sum() > 1 else math.nan
        se_seeds = d.std().item() / math.sqrt(len(d)) if len(d) > 1 else 0.0
        se = math.hypot(se_bases, se_seeds)
        diff = d.mean().item()
        out[fig] = {"editor": sum(point[e][fig] for e in editor) / len(editor), "baseline": sum(base_vals) / len(editor),
                    "diff": diff, "se": se, "se_bases": se_bases, "se_seeds": se_seeds,
                    "z": diff / se if se > 0 else math.nan}
    out["matched"] = not math.isnan(out["id_mean"]["diff"])
    out["outside_share"] = lost.double().mean().item()
    return out


def _se(rep_values: torch.Tensor, seed_values: torch.Tensor) -> float:
    se_seeds = seed_values.std().item() / math.sqrt(len(seed_values)) if len(seed_values) > 1 else 0.0
    return math.hypot(rep_values.std().item(), se_seeds)


def beats(result: Dict[str, object], z: float = 2.0) -> bool:
    """On the curve, and better on every verdict figure by more than ``z`` standard errors."""
    return bool(result["matched"]) and all(
        sign * result[fig]["diff"] > z * result[fig]["se"] for fig, sign in VERDICT_FIGURES.items())


def analyse(methods: Dict[str, Scored], editors: Dict[str, List[str]], curves: Dict[str, List[str]],
            n_boot: int = 1000, seed: int = 0, z: float = 2.0) -> Dict[str, object]:
    """Every editor against every baseline curve.

    Args:
        methods: name -> judged trajectories (all on the same bases).
        editors: editor -> its seeds' method names. curves: baseline -> method names in extent order (≥ 2).

    Returns ``{"figures": name -> figure -> {"value", "se"}, "matched": editor -> curve -> :func:`matched` plus
    ``beats``, "beats": editor -> beats every curve}``.
    """
    for name, members in curves.items():
        if len(members) < 2:
            raise ValueError(f"curve {name} has {len(members)} point(s): a trade-off curve needs at least 2 extents")
    point, reps = bootstrap(methods, n_boot, seed)
    figs = {name: {f: {"value": point[name][f], "se": reps[name][f].std().item()} for f in FIGURES}
            for name in methods}
    table = {}
    for editor, seeds in editors.items():
        table[editor] = {}
        for curve, members in curves.items():
            res = matched(seeds, members, point, reps)
            res["beats"] = beats(res, z)
            table[editor][curve] = res
    return {"figures": figs, "matched": table, "z": z, "n_boot": n_boot,
            "beats": {e: bool(table[e]) and all(r["beats"] for r in table[e].values()) for e in table}}
