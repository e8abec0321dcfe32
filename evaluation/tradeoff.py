"""Matched trade-off curves: does an editor beat a family of linear edits at the same judged age change?

A bigger edit ages a face more and changes it more, so one editor row against one baseline row says
little: the editor may simply move less. Here a baseline family (InterfaceGAN at several extents) gives
a curve, figure against judged age change, and an editor's figure is compared with that curve
interpolated at the editor's own judged age change. The same can be read along the other axis: the
curve interpolated at the editor's own identity mean (how much judged age change, and how many flips,
the linear edit buys for the identity the editor keeps). That view places editors that age faces
further than any extent of the family, where the first view has no curve to match on.

An editor has a curve of its own too: its edit stopped after 1, 2, ... of its steps, as the extents are
the family's. Given it, an editor whose full edit ages faces further than any extent is read at the
largest judged age change both curves reach (the family's furthest point), on its own steps; an editor
inside the family's range is read at its full edit, as without it.

Per method the inputs are per trajectory: its base face (the resampling unit), its judged age change
(+ = the commanded direction), whether the judged gender flipped at any step and at the last one, and the
identity cosine of every step taken to its base. Figures: ``age_change`` (mean), ``id_mean``, ``id_p5``
(5th percentile), ``id_min`` (over every step taken), ``flip_rate`` (a flip at any step) and ``flip_end``
(the edit's result flipped).

Standard errors: a bootstrap over base faces, every method resampled on the same bases in each replicate
(so shared base-to-base variation cancels in the differences), plus, for an editor with several training
seeds, the spread between its seeds (std / sqrt(seeds)); the two are added in quadrature. A baseline fitted
several times on independent samples (InterfaceGAN's boundary moves a lot between fits) gives one curve per
fit: the editor is compared with each, the differences are averaged, and the spread between the fits
(std / sqrt(fits)) is added in quadrature as well.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

FIGURES = ("age_change", "id_mean", "id_p5", "id_min", "flip_rate", "flip_end")
# the figures a verdict is taken on, with +1 where higher is better and -1 where lower is better, per
# matching axis: at the same judged age change, and at the same identity mean. Both flip figures count: a flip at
# any step is the stricter one, a flip of the edit's result the one that does not grow with the number of steps
# judged (a noisy gender judge flips more often the more often it looks), so edits of different lengths compare on it
VERDICT_FIGURES = {"id_mean": 1, "id_p5": 1, "flip_rate": -1, "flip_end": -1}
VERDICT_AT = {"age_change": VERDICT_FIGURES,
              "id_mean": {"age_change": 1, "id_p5": 1, "flip_rate": -1, "flip_end": -1}}


@dataclass
class Scored:
    """One method's judged trajectories: N trajectories of T steps."""

    base_N: torch.Tensor     # int64, the base face of each trajectory (trajectories of one base resample together)
    age_N: torch.Tensor      # judged age change, last step − base, + in the commanded direction
    flip_N: torch.Tensor     # bool, judged gender differs from the base's at some step
    cos_NT: torch.Tensor     # identity cosine of each step to its base
    valid_NT: torch.Tensor   # bool, the steps the episode took
    flip_end_N: torch.Tensor  # bool, judged gender of the last step differs from the base's

    def __post_init__(self):
        n = len(self.base_N)
        if not (len(self.age_N) == len(self.flip_N) == len(self.flip_end_N) == n
                and self.cos_NT.shape == self.valid_NT.shape and len(self.cos_NT) == n and n > 0):
            raise ValueError(f"Scored: expected N base ids, ages and flips and N×T cosines and valid steps, got "
                             f"{len(self.base_N)}, {len(self.age_N)}, {len(self.flip_N)}/{len(self.flip_end_N)}, "
                             f"{tuple(self.cos_NT.shape)}, {tuple(self.valid_NT.shape)}")
        if not self.valid_NT.any(1).all():
            raise ValueError("Scored: every trajectory needs at least one step taken")

    def rows(self, rows: torch.Tensor) -> "Scored":
        """The trajectories ``rows`` (indices, repeats allowed, or a boolean mask)."""
        return Scored(self.base_N[rows], self.age_N[rows], self.flip_N[rows], self.cos_NT[rows], self.valid_NT[rows],
                      self.flip_end_N[rows])


def figures(s: Scored, rows: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """The method's figures over ``rows`` (trajectory indices, repeats allowed; None: all)."""
    if rows is not None:
        s = s.rows(rows)
    cos = s.cos_NT[s.valid_NT].double()
    return {"age_change": s.age_N.double().mean().item(), "id_mean": cos.mean().item(),
            "id_p5": torch.quantile(cos, 0.05).item(), "id_min": cos.min().item(),
            "flip_rate": s.flip_N.double().mean().item(), "flip_end": s.flip_end_N.double().mean().item()}


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


def weighted_figures(s: Scored, weight_BN: torch.Tensor) -> Dict[str, torch.Tensor]:
    """:func:`figures` for B resamples at once, each given by how many times it draws every trajectory
    (``weight_BN``, B×N counts): figure -> B values, equal to ``figures(s, rows)`` of each resample's rows."""
    w = weight_BN.double()
    cos, valid = s.cos_NT.double(), s.valid_NT
    out = {"age_change": (w @ s.age_N.double()) / w.sum(1), "flip_rate": (w @ s.flip_N.double()) / w.sum(1),
           "flip_end": (w @ s.flip_end_N.double()) / w.sum(1),
           "id_mean": (w @ (cos * valid).sum(1)) / (w @ valid.sum(1).double())}
    lowest_N = cos.masked_fill(~valid, math.inf).min(1).values
    out["id_min"] = lowest_N.expand_as(w).masked_fill(w == 0, math.inf).min(1).values
    # 5th percentile of the resampled steps, as torch.quantile's linear rule over the repeated values: every step's
    # cosine once, sorted, weighted by its trajectory's count; the order statistics by the cumulative count
    rows, _ = valid.nonzero(as_tuple=True)
    values, order = cos[valid].sort()
    cum = w[:, rows[order]].cumsum(1)
    pos = 0.05 * (cum[:, -1] - 1)
    low = pos.floor()
    at = lambda k: values[torch.searchsorted(cum, k[:, None], right=True).squeeze(1)]  # noqa: E731  the k-th value
    out["id_p5"] = at(low) + (pos - low) * (at(torch.minimum(low + 1, cum[:, -1] - 1)) - at(low))
    return out


def bootstrap(methods: Dict[str, Scored], n_boot: int, seed: int = 0, chunk: int = 100) -> Tuple[Dict, Dict]:
    """(point figures, replicate figures): name -> figure -> float, and name -> figure -> n_boot tensor.

    Each replicate draws the bases with replacement once and evaluates every method on them; ``chunk``
    replicates are evaluated together.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot} invalid: expected an int >= 2")
    rows = _rows_by_base(methods)
    n_bases = len(next(iter(rows.values())))
    rng = torch.Generator().manual_seed(seed)
    point = {name: figures(s) for name, s in methods.items()}
    picks = torch.stack([torch.randint(n_bases, (n_bases,), generator=rng) for _ in range(n_boot)])
    draws = torch.zeros(n_boot, n_bases).scatter_add_(1, picks, torch.ones(picks.shape))  # B×bases counts
    reps = {name: {f: torch.empty(n_boot, dtype=torch.float64) for f in FIGURES} for name in methods}
    for name, s in methods.items():
        by_traj = torch.empty(len(s.base_N), dtype=torch.long)
        by_traj[rows[name].flatten()] = torch.arange(n_bases).repeat_interleave(rows[name].shape[1])
        for start in range(0, n_boot, chunk):
            for f, v in weighted_figures(s, draws[start:start + chunk, by_traj]).items():
                reps[name][f][start:start + chunk] = v
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


def interpolate_batch(xs_BC: torch.Tensor, ys_BC: torch.Tensor, x_B: torch.Tensor) -> torch.Tensor:
    """:func:`interpolate` for B curves at once (one per bootstrap replicate): B values, nan where x is off."""
    x0, x1, y0, y1 = xs_BC[:, :-1], xs_BC[:, 1:], ys_BC[:, :-1], ys_BC[:, 1:]
    x = x_B[:, None]
    inside = (torch.minimum(x0, x1) <= x) & (x <= torch.maximum(x0, x1))
    first = inside.int().argmax(1, keepdim=True)  # the first segment holding x (0 when none does)
    span = (x1 - x0).gather(1, first)
    w = torch.where(span == 0, torch.zeros_like(span), (x - x0.gather(1, first)) / span)
    out = (y0.gather(1, first) + w * (y1 - y0).gather(1, first)).squeeze(1)
    return torch.where(inside.any(1), out, torch.full_like(out, math.nan))


def curve_fits(curve: Sequence) -> List[List[str]]:
    """A baseline curve's fits: a list of method names is one fit, a list of such lists several."""
    return [list(curve)] if curve and isinstance(curve[0], str) else [list(c) for c in curve]


def _against_fit(editor: List[str], curve: List[str], point: Dict, reps: Dict, at: str,
                 steps: Optional[List[List[str]]]) -> Dict[str, object]:
    """Every seed of ``editor`` against one fit's curve, at the seed's own ``at``: where each seed is read (S, and
    S×B per bootstrap replicate), whether it is read on its step curve, and per other figure the seeds' values,
    the curve's values there and the per-replicate differences (S×B)."""
    curve_at = torch.tensor([point[c][at] for c in curve], dtype=torch.float64)[None]
    reps_at = torch.stack([reps[c][at] for c in curve], 1)
    read = torch.tensor([point[e][at] for e in editor], dtype=torch.float64)      # S: where each seed is read
    rep_read = torch.stack([reps[e][at] for e in editor])                           # S×B
    beyond = torch.zeros(len(editor), dtype=torch.bool)
    rep_beyond = torch.zeros(rep_read.shape, dtype=torch.bool)
    if steps is not None and at == "age_change":
        reach, rep_reach = curve_at.max(), reps_at.max(1).values
        beyond, rep_beyond = read > reach, rep_read > rep_reach[None]
        read, rep_read = torch.minimum(read, reach), torch.minimum(rep_read, rep_reach[None])

    def editor_values(fig: str) -> Tuple[torch.Tensor, torch.Tensor]:
        own = torch.tensor([point[e][fig] for e in editor], dtype=torch.float64)
        rep_own = torch.stack([reps[e][fig] for e in editor])
        for s in (s for s in range(len(editor)) if beyond[s] or rep_beyond[s].any()):
            xs = torch.tensor([[point[n][at] for n in steps[s]]], dtype=torch.float64)
            ys = torch.tensor([[point[n][fig] for n in steps[s]]], dtype=torch.float64)
            own[s] = torch.where(beyond[s], interpolate_batch(xs, ys, read[s:s + 1])[0], own[s])
            on = interpolate_batch(torch.stack([reps[n][at] for n in steps[s]], 1),
                                   torch.stack([reps[n][fig] for n in steps[s]], 1), rep_read[s])
            rep_own[s] = torch.where(rep_beyond[s], on, rep_own[s])
        return own, rep_own

    out: Dict[str, object] = {"read": read, "rep_read": rep_read, "beyond": beyond}
    for fig in (f for f in FIGURES if f != at):
        curve_y = torch.tensor([point[c][fig] for c in curve], dtype=torch.float64)[None]
        reps_y = torch.stack([reps[c][fig] for c in curve], 1)
        own, rep_own = editor_values(fig)
        base_vals = interpolate_batch(curve_at.expand(len(editor), -1), curve_y.expand(len(editor), -1), read)
        rep_diffs = torch.stack([rep_own[s] - interpolate_batch(reps_at, reps_y, rep_read[s])
                                 for s in range(len(editor))])
        out[fig] = (own, base_vals, rep_diffs)
    return out


def _spread(values: torch.Tensor) -> float:
    """std / sqrt(n) of n values (0 for one)."""
    return values.std().item() / math.sqrt(len(values)) if len(values) > 1 else 0.0


def matched(editor: List[str], curve: Sequence, point: Dict, reps: Dict, at: str = "age_change",
            steps: Optional[List[List[str]]] = None) -> Dict[str, object]:
    """An editor (its seeds' method names) against a baseline curve (method names in extent order, or one such
    list per independent fit of the baseline), at the editor's own value of ``at`` (``age_change`` or
    ``id_mean``).

    Each seed is compared with each fit's curve at its own value; the differences are averaged over seeds and
    fits. ``steps`` (per seed, the method names of its edit stopped after 1, 2, ... steps, the last being the
    seed's full edit) gives the editor a curve of its own: at the judged age change, a seed whose full edit ages
    faces further than any point of a fit's curve is then read where both curves reach, at that curve's largest
    judged age change, on its own step curve (the same per bootstrap replicate). Without ``steps`` such a seed is
    off the curve.

    Returns ``at``, the mean value the seeds are read at (``at_value``) with its standard error (``at_se``), the
    number of seeds read on their step curve against some fit (``on_steps``), the number of ``fits``, whether the
    editor lies on the curve (``matched``, and the share of bootstrap replicates where it does not), and per other
    figure the editor's value, the interpolated baseline (mean over fits), the difference (editor − baseline), its
    standard error (``se``: ``se_bases`` from the bootstrap over the bases, ``se_seeds`` = std over seeds / √seeds,
    ``se_fits`` = std over fits / √fits, in quadrature) and ``z`` = difference / se.
    """
    if at not in VERDICT_AT:
        raise ValueError(f"at={at!r} invalid: expected one of {list(VERDICT_AT)}")
    if steps is not None and [s[-1] for s in steps] != list(editor):
        raise ValueError(f"steps: expected one list per seed of {editor}, each ending with the seed's full edit")
    per_fit = [_against_fit(editor, fit, point, reps, at, steps) for fit in curve_fits(curve)]
    read = torch.stack([f["read"] for f in per_fit])  # fits×S
    out: Dict[str, object] = {"seeds": len(editor), "fits": len(per_fit), "at": at, "at_value": read.mean().item(),
                              "at_se": _se(torch.stack([f["rep_read"] for f in per_fit]).mean((0, 1)), read.mean(0)),
                              "on_steps": int(torch.stack([f["beyond"] for f in per_fit]).any(0).sum())}
    lost = torch.zeros(per_fit[0]["rep_read"].shape[1], dtype=torch.bool)
    for fig in (f for f in FIGURES if f != at):
        own, base_vals, rep_diffs = (torch.stack(parts) for parts in zip(*(f[fig] for f in per_fit)))
        d = own - base_vals                   # fits×S
        rep_mean = rep_diffs.mean((0, 1))     # B: nan where some seed is off some fit's curve
        lost |= rep_mean.isnan()
        kept = rep_mean[~rep_mean.isnan()]
        se_bases = kept.std().item() if len(kept) > 1 else math.nan
        se_seeds, se_fits = _spread(d.mean(0)), _spread(d.mean(1))
        se = math.sqrt(se_bases ** 2 + se_seeds ** 2 + se_fits ** 2)
        diff = d.mean().item()
        out[fig] = {"editor": own.mean().item(), "baseline": base_vals.mean().item(),
                    "diff": diff, "se": se, "se_bases": se_bases, "se_seeds": se_seeds, "se_fits": se_fits,
                    "z": diff / se if se > 0 else math.nan}
    out["matched"] = not math.isnan(out["id_p5"]["diff"])
    out["outside_share"] = lost.double().mean().item()
    return out


def _se(rep_values: torch.Tensor, seed_values: torch.Tensor) -> float:
    return math.hypot(rep_values.std().item(), _spread(seed_values))


def beats(result: Dict[str, object], z: float = 2.0) -> bool:
    """On the curve, and better on every verdict figure of its axis by more than ``z`` standard errors."""
    return bool(result["matched"]) and all(
        sign * result[fig]["diff"] > z * result[fig]["se"] for fig, sign in VERDICT_AT[result["at"]].items())


def analyse(methods: Dict[str, Scored], editors: Dict[str, List[str]], curves: Dict[str, List[str]],
            n_boot: int = 1000, seed: int = 0, z: float = 2.0,
            steps: Optional[Dict[str, List[List[str]]]] = None) -> Dict[str, object]:
    """Every editor against every baseline curve.

    Args:
        methods: name -> judged trajectories (all on the same bases).
        editors: editor -> its seeds' method names. curves: baseline -> method names in extent order (≥ 2), or
            one such list per independent fit of the baseline (:func:`matched` averages over them).
        steps: editor -> per seed, its step curve for :func:`matched` (editors left out have none).

    Returns ``{"figures": name -> figure -> {"value", "se"}, "matched": editor -> curve -> :func:`matched` at the
    judged age change plus ``beats``, "matched_at_identity": the same at the identity mean, "beats_at": editor ->
    axis -> beats every curve there, "beats": editor -> beats every curve on one axis at least}``.
    """
    for name, members in curves.items():
        if not members or any(len(fit) < 2 for fit in curve_fits(members)):
            raise ValueError(f"curve {name} has a fit of under 2 points: a trade-off curve needs at least 2 extents")
    point, reps = bootstrap(methods, n_boot, seed)
    figs = {name: {f: {"value": point[name][f], "se": reps[name][f].std().item()} for f in FIGURES}
            for name in methods}
    tables: Dict[str, Dict] = {}
    for at in VERDICT_AT:
        tables[at] = {}
        for editor, seeds in editors.items():
            tables[at][editor] = {}
            for curve, members in curves.items():
                res = matched(seeds, members, point, reps, at, (steps or {}).get(editor))
                res["beats"] = beats(res, z)
                tables[at][editor][curve] = res
    beats_at = {e: {at: bool(t[e]) and all(r["beats"] for r in t[e].values()) for at, t in tables.items()}
                for e in editors}
    return {"figures": figs, "matched": tables["age_change"], "matched_at_identity": tables["id_mean"], "z": z,
            "n_boot": n_boot, "beats_at": beats_at, "beats": {e: any(b.values()) for e, b in beats_at.items()}}
