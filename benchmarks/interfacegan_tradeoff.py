"""The verdict of ``--compare interfacegan`` by matched trade-off curves: ``tradeoff.png`` and the report's text.

The analysis itself is ``evaluation/tradeoff.py``; this module runs it on the comparison's judged trajectories
and turns it into a figure and markdown.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.interfacegan_judging import DIRECTIONS
from benchmarks.report import pyplot, save_figure
from evaluation.tradeoff import VERDICT_AT, VERDICT_FIGURES, analyse, curve_fits

log = logging.getLogger(__name__)
LABELS = {"id_mean": "identity cosine, mean", "id_p5": "identity cosine, 5th percentile",
          "id_min": "identity cosine, min", "flip_rate": "gender-flip rate (any step)",
          "flip_end": "gender-flip rate (the edit's result)", "age_change": "judged age change (y)"}


def tradeoff(results: Dict[str, Any], n_boot: int, seed: int, z: float = 2.0) -> Optional[Dict[str, Any]]:
    """:func:`evaluation.tradeoff.analyse` on the comparison's methods; None when a curve has under 2 extents."""
    families = results["families"]
    if any(len(fit) < 2 for members in families["curves"].values() for fit in curve_fits(members)):
        log.warning("one interfacegan extent only: no trade-off curve, no matched verdict "
                    "(set interfacegan.extents to 2 or more distances)")
        return None
    log.warning("trade-off curves: bootstrap of %d replicates over the bases", n_boot)
    return analyse(results["scored"], families["editors"], families["curves"], n_boot=n_boot, seed=seed, z=z,
                   steps=families.get("steps"))


def by_direction(results: Dict[str, Any], n_boot: int, seed: int, z: float = 2.0) -> Dict[str, Any]:
    """The analysis of :func:`tradeoff` on each commanded direction's trajectories alone: direction -> its result
    (call it where :func:`tradeoff` gave one: the curves are the same).

    A diagnostic beside the verdict, which pools both directions: an editor that ages faces further in one
    direction than in the other is read at the mean of two points of a concave curve, where the linear edit ages
    both alike; here each direction meets InterfaceGAN's curve of that direction."""
    families, direction_N = results["families"], results["direction"]
    out = {}
    for name, code in DIRECTIONS.items():
        rows = direction_N == code
        if bool(rows.any()):
            scored = {m: s.rows(rows) for m, s in results["scored"].items()}
            out[name] = analyse(scored, families["editors"], families["curves"], n_boot=n_boot, seed=seed, z=z,
                                steps=families.get("steps"))
    return out


def direction_section(per_direction: Optional[Dict[str, Any]]) -> List[str]:
    """The report's lines for :func:`by_direction`: per editor, direction and curve, the z of every verdict figure
    at the same judged age change."""
    if not per_direction:
        return []
    figs = list(VERDICT_AT["age_change"])
    lines = ["## Each direction on its own curve (a diagnostic)", "",
             "The verdict above pools the older and the younger edits. Here each commanded direction's edits meet "
             "InterfaceGAN's curve of that direction alone, at the editor's own judged age change in it: z = "
             "difference / SE as above (+ = the editor better on identity, − = fewer flips).", "",
             "| editor | direction | curve | read at (y) | " + " | ".join(f"{LABELS[f]} z" for f in figs) + " | beats |",
             "|---|---|---|---|" + "---|" * len(figs) + "---|"]
    for direction, trade in per_direction.items():
        for editor, per_curve in trade["matched"].items():
            for curve, res in per_curve.items():
                zs = " | ".join(f"{res[f]['z']:.2f}" if res["matched"] else "—" for f in figs)
                lines.append(f"| {editor} | {direction} | {curve} | {_pm(res['at_value'], res['at_se'])} | {zs} | "
                             f"{'yes' if res['beats'] else 'no'} |")
    return lines + [""]


def plot(trade: Dict[str, Any], families: Dict[str, Any], path: Path) -> bool:
    """tradeoff.png: each verdict figure against judged age change; baseline curves (points at each extent, ± SE
    bars), each editor's seeds (small), its step curve (dashed) and where it is read (± SE bars). False without
    matplotlib."""
    plt = pyplot("tradeoff.png")
    if plt is None:
        return False
    figs = trade["figures"]
    panels = list(VERDICT_FIGURES)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, key in zip(axes, panels):
        for i, (curve, fits) in enumerate(families["curves"].items()):
            for k, members in enumerate(curve_fits(fits)):  # the first fit with error bars, the others thin
                x = [figs[m]["age_change"]["value"] for m in members]
                y = [figs[m][key]["value"] for m in members]
                if k:
                    ax.plot(x, y, marker="o", ms=2, lw=0.8, alpha=0.5, color=f"C{i}")
                    continue
                ax.errorbar(x, y, yerr=[figs[m][key]["se"] for m in members],
                            xerr=[figs[m]["age_change"]["se"] for m in members], marker="o", ms=4, capsize=2,
                            color=f"C{i}", label=curve + (f" (fit 1 of {len(curve_fits(fits))}; others thin)"
                                                          if len(curve_fits(fits)) > 1 else ""))
                for m, xm, ym in zip(members, x, y):
                    ax.annotate(m.rsplit("_", 1)[1], (xm, ym), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for j, (editor, seeds) in enumerate(families["editors"].items()):
            color = f"C{len(families['curves']) + j}"
            per_seed = families.get("steps", {}).get(editor)
            if per_seed:  # the editor's own curve: its edit stopped after 1, 2, ... steps, mean over its seeds
                mean = lambda k, f: sum(figs[names[k]][f]["value"] for names in per_seed) / len(per_seed)  # noqa: E731
                ks = range(len(per_seed[0]))
                ax.plot([mean(k, "age_change") for k in ks], [mean(k, key) for k in ks], ls="--", lw=1,
                        marker=".", ms=3, color=color, alpha=0.7)
            ax.scatter([figs[s]["age_change"]["value"] for s in seeds], [figs[s][key]["value"] for s in seeds],
                       s=12, color=color, alpha=0.6)
            res = next(iter(trade["matched"][editor].values()))
            ax.errorbar([res["at_value"]], [res[key]["editor"]], xerr=[res["at_se"]],
                        yerr=[res[key]["se"]], marker="*", ms=12, capsize=3, color=color,
                        label=f"{editor} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})", ls="none")
        ax.set_xlabel(LABELS["age_change"])
        ax.set_ylabel(LABELS[key])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("judged figures against judged age change (labels: InterfaceGAN extent in boundary units)")
    save_figure(fig, path)
    return True


def _pm(value: float, se: float) -> str:
    return f"{value:.3f} ± {se:.3f}"


def section(trade: Optional[Dict[str, Any]], families: Dict[str, Any], has_plot: bool) -> List[str]:
    """The report's lines: the verdict, the matched tables (at the judged age change, at the identity mean) and
    the curves' points."""
    head = ["## Verdict: matched trade-off curves", ""]
    if trade is None:
        return head + ["Not computed: `interfacegan.extents` holds one distance, so there is no InterfaceGAN curve "
                       "to match a judged age change on. Give two or more (the default is [1, 2, 3, 4, 5, 6]).", ""]
    z = trade["z"]
    fits = max(len(curve_fits(c)) for c in families["curves"].values())
    lines = head + [
        f"Each editor's figures against InterfaceGAN's, read on two axes. **At the same judged age change**: the "
        f"baseline curve (judged figures at each extent) is interpolated linearly at the editor's own judged age "
        f"change, never extrapolated; the editor beats it when its identity mean and 5th percentile are higher and "
        f"both its flip rates lower (a flip at any step, and a flip of the edit's result, which does not grow with "
        f"the number of steps judged). An editor whose full edit ages faces further than every extent is read where "
        f"both curves reach, at the curve's largest judged age change, on its own curve: its edit stopped after 1, "
        f"2, ... steps (the seeds so read: `on steps`). **At the same identity**: the curve is interpolated at the "
        f"editor's own identity mean (identity falls steadily with the extent, so this places editors that age "
        f"faces further than any extent does); the editor beats it when its judged age change and identity 5th "
        f"percentile are higher and both flip rates lower. Each figure must be better by more than {z:g} standard "
        f"errors: a bootstrap over the bases ({trade['n_boot']} replicates, every method on the same resampled "
        f"bases), the spread between the editor's seeds (std / √seeds) and the spread between InterfaceGAN's "
        f"{fits} independent fit{'s' if fits > 1 else ''} (std / √fits; the editor is read against each fit's curve "
        f"and the differences are averaged), in quadrature. An editor beats InterfaceGAN when it beats every curve "
        f"on one axis.",
        ""]
    views = {"age_change": ("at the same judged age change", trade["matched"]),
             "id_mean": ("at the same identity", trade["matched_at_identity"])}
    for editor in trade["matched"]:
        won = trade["beats"][editor]
        where = [views[at][0] for at, b in trade["beats_at"][editor].items() if b]
        lines.append(f"- **{editor} {'beats' if won else 'does not beat'} InterfaceGAN** "
                     f"({' and '.join(trade['matched'][editor])}" + (f"; {' and '.join(where)}" if where else "") + ").")
    outside = {}
    for at, (title, table) in views.items():
        lines += ["", f"{title[0].upper()}{title[1:]} ({LABELS[at]} of the editor):", "",
                  f"| editor | curve | {LABELS[at]} | figure | editor | InterfaceGAN there | difference ± SE | z |"
                  f" SE from bases / seeds / fits | better by > {z:g} SE |", "|---|---|---|---|---|---|---|---|---|---|"]
        for editor, per_curve in table.items():
            for curve, res in per_curve.items():
                value = _pm(res["at_value"], res["at_se"]) + (f" (on steps: {res['on_steps']} of {res['seeds']} "
                                                              f"seeds)" if res.get("on_steps") else "")
                if res["outside_share"] > 0:
                    outside[f"{editor}/{curve} ({title})"] = res["outside_share"]
                if not res["matched"]:
                    lines.append(f"| {editor} | {curve} | {value} | — | — | outside the curve's range | — | — | — | no |")
                    continue
                for key, sign in VERDICT_AT[at].items():
                    r = res[key]
                    lines.append(f"| {editor} | {curve} | {value} | {LABELS[key]} | {r['editor']:.3f} | "
                                 f"{r['baseline']:.3f} | {_pm(r['diff'], r['se'])} | {r['z']:.2f} | "
                                 f"{r['se_bases']:.3f} / {r['se_seeds']:.3f} / {r.get('se_fits', 0.0):.3f} | "
                                 f"{'yes' if sign * r['diff'] > z * r['se'] else 'no'} |")
    if outside:
        lines += ["", f"Share of bootstrap replicates whose matched value fell outside the curve (left out of the SE): "
                      f"{', '.join(f'{k} {v:.1%}' for k, v in outside.items())}."]
    figs = trade["figures"]
    members = [m for fits in families["curves"].values() for fit in curve_fits(fits) for m in fit] + \
        [m for ms in families["editors"].values() for m in ms]
    lines += ["", "Points of the curves (± bootstrap SE over the bases):", "",
              "| method | judged age change (y) | identity mean | identity 5th pct | identity min | flip rate (any step) "
              "| flip rate (result) |", "|---|---|---|---|---|---|---|"]
    for m in members:
        f = figs[m]
        lines.append(f"| {m} | " + " | ".join(_pm(f[k]["value"], f[k]["se"])
                                               for k in ("age_change", "id_mean", "id_p5", "id_min", "flip_rate",
                                                         "flip_end")) + " |")
    lines += ["", "![trade-off curves](tradeoff.png)" if has_plot else "(matplotlib not installed: no tradeoff.png)", ""]
    return lines
