"""Matched trade-off curves (evaluation/tradeoff.py) and the InterfaceGAN ladder that feeds them."""
import math

import numpy as np
import pytest
import torch

from benchmarks.interfacegan import interfacegan_ladder, interfacegan_trajectories
from benchmarks.interfacegan_tradeoff import by_direction, direction_section, plot, section
from evaluation.tradeoff import Scored, analyse, bootstrap, figures, interpolate, interpolate_batch, matched

B, T = 200, 4  # bases, steps


def linear_family(extent: float, noise: torch.Generator, identity_cost: float = 0.02, flip_per_year: float = 0.05,
                  directions: int = 2) -> Scored:
    """Synthetic judged trajectories of a linear edit: age change ∝ extent (+ noise), identity and flips worse with it."""
    n = B * directions
    age = 2.0 * extent + torch.randn(n, generator=noise)
    cos = (1.0 - identity_cost * extent * torch.linspace(0.25, 1.0, T)).expand(n, T).clone()
    cos += 0.002 * torch.randn(n, T, generator=noise)
    flip = torch.rand(n, generator=noise) < min(1.0, flip_per_year * 2.0 * extent)
    flip_end = flip & (torch.rand(n, generator=noise) < 0.8)  # most flips last to the edit's result
    return Scored(torch.arange(B).repeat(directions), age, flip, cos, torch.ones(n, T, dtype=torch.bool), flip_end)


def family(noise, **kw):
    return {f"ig_{e:g}": linear_family(e, noise, **kw) for e in (1.0, 2.0, 3.0, 4.0)}


def test_figures_over_rows_and_repeats():
    s = Scored(torch.tensor([0, 1]), torch.tensor([2.0, 4.0]), torch.tensor([True, False]),
               torch.tensor([[1.0, 0.5], [0.9, 0.0]]), torch.tensor([[True, True], [True, False]]),
               torch.tensor([False, False]))
    f = figures(s)
    assert f["age_change"] == 3.0 and f["flip_rate"] == 0.5 and f["flip_end"] == 0.0 and f["id_min"] == 0.5
    assert f["id_mean"] == pytest.approx(0.8) and f["id_p5"] == pytest.approx(np.quantile([1.0, 0.5, 0.9], 0.05))
    again = figures(s, torch.tensor([1, 1, 0]))  # a resample repeating row 1
    assert again["age_change"] == pytest.approx(10 / 3) and again["flip_rate"] == pytest.approx(1 / 3)


def test_scored_rejects_mismatched_shapes_and_empty_trajectories():
    with pytest.raises(ValueError, match="expected N base ids"):
        Scored(torch.arange(3), torch.zeros(2), torch.zeros(3, dtype=torch.bool), torch.zeros(3, 2),
               torch.ones(3, 2, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one step"):
        Scored(torch.arange(2), torch.zeros(2), torch.zeros(2, dtype=torch.bool), torch.zeros(2, 2),
               torch.tensor([[True, False], [False, False]]), torch.zeros(2, dtype=torch.bool))


def test_interpolate_in_extent_order_without_extrapolation():
    assert interpolate([1.0, 2.0, 4.0], [10.0, 20.0, 0.0], 3.0) == pytest.approx(10.0)
    assert interpolate([2.0, 1.0], [5.0, 7.0], 1.5) == pytest.approx(6.0)  # a decreasing curve works too
    assert math.isnan(interpolate([1.0, 2.0], [0.0, 1.0], 2.5)) and math.isnan(interpolate([1.0, 2.0], [0, 1], 0.5))


def test_bootstrap_resamples_every_method_on_the_same_bases():
    noise = torch.Generator().manual_seed(0)
    methods = {"a": linear_family(1.0, noise), "b": linear_family(1.0, noise)}
    methods["b"].age_N = methods["a"].age_N + 1.0  # b = a shifted: paired replicates differ by exactly 1
    point, reps = bootstrap(methods, 50, seed=3)
    torch.testing.assert_close(reps["b"]["age_change"] - reps["a"]["age_change"], torch.ones(50, dtype=torch.float64))
    assert point["b"]["age_change"] == pytest.approx(point["a"]["age_change"] + 1.0)
    assert 0 < reps["a"]["age_change"].std() < 0.2  # ≈ 1/sqrt(400) plus the base-to-base spread
    _, again = bootstrap(methods, 50, seed=3)
    assert torch.equal(again["a"]["id_p5"], reps["a"]["id_p5"])  # seeded
    with pytest.raises(ValueError, match="other bases"):
        bootstrap({"a": methods["a"], "c": Scored(methods["a"].base_N + 1, *[getattr(methods["a"], k) for k in
                                                   ("age_N", "flip_N", "cos_NT", "valid_NT", "flip_end_N")])}, 10)


def test_an_editor_on_the_curve_does_not_beat_it_and_a_better_one_does():
    noise = torch.Generator().manual_seed(1)
    methods = family(noise)
    # seeds of an editor that is just the linear edit at 2.5 units: on the curve
    for s in range(3):
        methods[f"same_seed{s}"] = linear_family(2.5, noise)
    # an editor ageing like 2.5 units at the identity cost and flip rate of 1 unit: better on every figure
    for s in range(3):
        better = linear_family(2.5, noise, identity_cost=0.008, flip_per_year=0.02)
        methods[f"good_seed{s}"] = better
    curves = {"ig": [f"ig_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)]}
    editors = {"same": [f"same_seed{s}" for s in range(3)], "good": [f"good_seed{s}" for s in range(3)]}
    out = analyse(methods, editors, curves, n_boot=200, seed=0)
    same, good = out["matched"]["same"]["ig"], out["matched"]["good"]["ig"]
    assert same["matched"] and same["seeds"] == 3 and same["at_value"] == pytest.approx(5.0, abs=0.2)
    assert abs(same["id_mean"]["z"]) < 3 and not same["beats"] and not out["beats"]["same"]
    assert good["beats"] and out["beats"]["good"]
    assert good["id_mean"]["diff"] > 0 and good["flip_rate"]["diff"] < 0
    assert good["id_mean"]["se"] == pytest.approx(math.hypot(good["id_mean"]["se_bases"], good["id_mean"]["se_seeds"]))
    assert good["id_mean"]["se_seeds"] > 0 and good["id_mean"]["se_bases"] > 0
    lines = "\n".join(section(out, {"curves": curves, "editors": editors}, has_plot=False))
    assert "**good beats InterfaceGAN**" in lines and "**same does not beat InterfaceGAN**" in lines


def test_several_fits_of_the_baseline_average_their_differences_and_add_their_spread():
    """A baseline fitted on several samples gives one curve per fit; an editor that beats the worst fit alone does
    not beat the fits together when they disagree by more than its margin."""
    noise = torch.Generator().manual_seed(3)
    fits = {"bad": dict(identity_cost=0.03, flip_per_year=0.08), "mid": dict(identity_cost=0.02, flip_per_year=0.05),
            "good": dict(identity_cost=0.008, flip_per_year=0.02)}
    methods = {f"ig_{fit}_{e:g}": linear_family(e, noise, **kw) for fit, kw in fits.items() for e in (1.0, 2.0, 3.0, 4.0)}
    for s in range(3):
        methods[f"ed_seed{s}"] = linear_family(2.5, noise, identity_cost=0.015, flip_per_year=0.035)
    editors = {"ed": [f"ed_seed{s}" for s in range(3)]}
    curve = {fit: [f"ig_{fit}_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)] for fit in fits}
    alone = analyse(methods, editors, curve, n_boot=200, seed=0)["matched"]["ed"]
    assert alone["bad"]["beats"] and not alone["good"]["beats"]
    together = analyse(methods, editors, {"ig": list(curve.values())}, n_boot=200, seed=0)["matched"]["ed"]["ig"]
    assert together["fits"] == 3 and not together["beats"]
    for fig in ("id_mean", "id_p5", "flip_rate", "flip_end"):
        per_fit = torch.tensor([alone[fit][fig]["diff"] for fit in fits], dtype=torch.float64)
        got = together[fig]
        assert got["diff"] == pytest.approx(per_fit.mean().item())
        assert got["se_fits"] == pytest.approx(per_fit.std().item() / math.sqrt(3), rel=1e-6)
        assert got["se"] == pytest.approx(math.sqrt(got["se_bases"] ** 2 + got["se_seeds"] ** 2 + got["se_fits"] ** 2))
    assert together["id_mean"]["se_fits"] > together["id_mean"]["se_bases"]  # here the fits disagree most
    single = analyse(methods, editors, {"ig": [curve["bad"]]}, n_boot=200, seed=0)["matched"]["ed"]["ig"]
    assert single["fits"] == 1 and single["id_mean"]["se_fits"] == 0.0 and single["beats"]  # a list of one fit


def test_batched_interpolation_equals_the_scalar_one():
    gen = torch.Generator().manual_seed(4)
    xs, ys = torch.rand(50, 4, generator=gen, dtype=torch.float64), torch.rand(50, 4, generator=gen, dtype=torch.float64)
    x = torch.rand(50, generator=gen, dtype=torch.float64) * 1.4 - 0.2  # some off every curve
    got = interpolate_batch(xs, ys, x)
    want = torch.tensor([interpolate(xs[i].tolist(), ys[i].tolist(), x[i].item()) for i in range(50)],
                        dtype=torch.float64)
    assert got.isnan().equal(want.isnan()) and 0 < int(got.isnan().sum()) < 50
    torch.testing.assert_close(got[~got.isnan()], want[~want.isnan()])


def test_an_editor_beyond_the_curve_is_not_matched_in_age_but_is_at_its_identity():
    noise = torch.Generator().manual_seed(2)
    # ages like 6 units (beyond every extent) at the identity of 2.5 units, flips of 1 unit
    far = linear_family(6.0, noise, identity_cost=0.02 * 2.5 / 6.0, flip_per_year=0.05 / 6.0)
    level = linear_family(6.0, noise, identity_cost=0.02 * 2.5 / 6.0, flip_per_year=0.05 / 6.0)
    # far loses its identity evenly over the steps (same mean, narrower spread: a higher 5th percentile)
    far.cos_NT = far.cos_NT.mean(1, keepdim=True).expand(-1, T) + 0.002 * torch.randn(far.cos_NT.shape, generator=noise)
    methods = {**family(noise), "far_seed0": far, "level_seed0": level}
    out = analyse(methods, {"far": ["far_seed0"], "level": ["level_seed0"]},
                  {"ig": [f"ig_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)]}, n_boot=50)
    res = out["matched"]["far"]["ig"]
    assert not res["matched"] and not res["beats"] and res["outside_share"] == 1.0
    at_id = out["matched_at_identity"]["far"]["ig"]
    assert at_id["matched"] and at_id["at"] == "id_mean" and at_id["beats"]
    assert at_id["age_change"]["baseline"] == pytest.approx(5.0, abs=0.3)  # the curve's age at 2.5 units' identity
    assert at_id["age_change"]["diff"] == pytest.approx(7.0, abs=0.4) and at_id["flip_rate"]["diff"] < 0
    assert out["beats_at"]["far"] == {"age_change": False, "id_mean": True} and out["beats"]["far"]
    level_id = out["matched_at_identity"]["level"]["ig"]  # more age, fewer flips, but the linear edit's p5
    assert level_id["age_change"]["z"] > 2 and abs(level_id["id_p5"]["z"]) < 2 and not out["beats"]["level"]
    text = "\n".join(section(out, {"curves": {"ig": []}, "editors": {}}, False))
    assert "**far beats InterfaceGAN** (ig; at the same identity)" in text
    with pytest.raises(ValueError, match="at='flip_rate' invalid"):
        matched(["far_seed0"], ["ig_1", "ig_2"], {}, {}, at="flip_rate")
    assert "outside the curve's range" in "\n".join(section(out, {"curves": {"ig": []}, "editors": {}}, False))
    with pytest.raises(ValueError, match="at least 2 extents"):
        analyse(methods, {"far": ["far_seed0"]}, {"ig": ["ig_1"]}, n_boot=20)


def test_tradeoff_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    noise = torch.Generator().manual_seed(3)
    methods = {**family(noise), "rl_seed0": linear_family(2.0, noise)}
    steps = [f"rl_seed0_step{k}" for k in range(1, T)] + ["rl_seed0"]
    methods.update(zip(steps[:-1], step_family(2.0, noise)[:-1]))
    families = {"curves": {"ig": [f"ig_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)]}, "editors": {"rl": ["rl_seed0"]},
                "steps": {"rl": [steps]}}
    out = analyse(methods, families["editors"], families["curves"], n_boot=20, steps=families["steps"])
    assert plot(out, families, tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_direction_is_read_on_its_own_curve():
    """An editor better than the linear edit in the older direction only: read per direction, it beats the curve
    there and not in the younger one; the rows of each direction are the same trajectories in every method."""
    noise = torch.Generator().manual_seed(4)
    methods = family(noise)
    for s in range(3):
        good, same = linear_family(2.5, noise, identity_cost=0.008, flip_per_year=0.02), linear_family(2.5, noise)
        methods[f"ed_seed{s}"] = Scored(same.base_N, *(torch.cat([getattr(good, k)[:B], getattr(same, k)[B:]])
                                                       for k in ("age_N", "flip_N", "cos_NT", "valid_NT", "flip_end_N")))
    families = {"curves": {"ig": [f"ig_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)]},
                "editors": {"ed": [f"ed_seed{s}" for s in range(3)]}}
    results = {"scored": methods, "families": families, "direction": torch.arange(2 * B) // B}  # older, then younger
    per = by_direction(results, n_boot=200, seed=0)
    assert list(per) == ["older", "younger"]
    older, younger = per["older"]["matched"]["ed"]["ig"], per["younger"]["matched"]["ed"]["ig"]
    assert older["beats"] and older["id_mean"]["z"] > 2 and not younger["beats"] and abs(younger["id_mean"]["z"]) < 3
    assert per["older"]["figures"]["ig_1"]["age_change"]["value"] == pytest.approx(
        methods["ig_1"].age_N[:B].double().mean().item())
    lines = "\n".join(direction_section(per))
    assert "| ed | older | ig |" in lines and "| ed | younger | ig |" in lines
    assert direction_section(None) == []


def test_ladder_judges_shared_steps_once_and_matches_each_traversal():
    base = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    boundary = np.array([3.0, 0, 0, 4.0, 0], dtype=np.float32)  # not unit length: normalised
    direction = torch.tensor([0, 1, 0])
    z, cols = interfacegan_ladder(base, direction, boundary, [1.0, 2.0, 4.0], steps=4)
    # distances 0.25..1 | 0.5..2 | 1..4 -> {0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4}
    assert z.shape == (3, 8, 5) and cols[2.0] == [1, 3, 4, 5] and cols[4.0] == [3, 5, 6, 7]
    for extent in (1.0, 2.0, 4.0):
        torch.testing.assert_close(z[:, cols[extent]], interfacegan_trajectories(base, direction, boundary, extent, 4))
    unit = torch.tensor(boundary) / 5.0
    moved = (z - base[:, None]) @ unit
    torch.testing.assert_close(moved[1, cols[4.0]], -torch.tensor([1.0, 2.0, 3.0, 4.0]))


def step_family(extent: float, noise: torch.Generator, **kw) -> list:
    """An editor's edits stopped after k = 1..T steps: the k-step edit of a linear-style editor reaching ``extent``."""
    return [linear_family(extent * k / T, noise, **kw) for k in range(1, T + 1)]


def test_an_editor_beyond_the_curve_is_read_on_its_own_steps_at_the_curve_reach():
    noise = torch.Generator().manual_seed(5)
    methods = family(noise)  # judged age change 2, 4, 6, 8 y at 1-4 units
    seeds = {"far": [], "level": [], "near": []}
    steps = {name: [] for name in seeds}
    for s in range(3):
        # far ages like 6 units in T steps (12 y, beyond the curve's 8 y) at the identity cost and flips of 2.5
        # units; level is the linear edit itself taken to 6 units; near stops at 3 units (inside the curve)
        for name, extent, kw in (("far", 6.0, {"identity_cost": 0.02 * 2.5 / 6.0, "flip_per_year": 0.05 * 2.5 / 6.0}),
                                 ("level", 6.0, {}), ("near", 3.0, {})):
            names = [f"{name}_seed{s}_step{k}" for k in range(1, T)] + [f"{name}_seed{s}"]
            methods.update(zip(names, step_family(extent, noise, **kw)))
            seeds[name].append(names[-1])
            steps[name].append(names)
    curves = {"ig": [f"ig_{e:g}" for e in (1.0, 2.0, 3.0, 4.0)]}
    without = analyse(methods, seeds, curves, n_boot=100, seed=0)
    out = analyse(methods, seeds, curves, n_boot=100, seed=0, steps=steps)
    assert not without["matched"]["far"]["ig"]["matched"]  # no extent reaches its full edit
    far = out["matched"]["far"]["ig"]
    assert far["matched"] and far["on_steps"] == 3 and far["outside_share"] == 0.0
    assert far["at_value"] == pytest.approx(8.0, abs=0.3)  # read where the curve stops: 4 units' judged age change
    # there its steps have 4 units' age at the identity cost of 4 · 2.5/6 units
    assert far["id_mean"]["editor"] == pytest.approx(1 - 0.02 * 4 * 2.5 / 6 * 0.625, abs=0.003)
    assert far["id_mean"]["baseline"] == pytest.approx(1 - 0.02 * 4 * 0.625, abs=0.003)
    assert far["beats"] and out["beats_at"]["far"]["age_change"]
    level = out["matched"]["level"]["ig"]
    assert level["matched"] and abs(level["id_mean"]["z"]) < 3 and not level["beats"]
    # an editor inside the curve is read at its own full edit, with or without its steps
    near, near_without = out["matched"]["near"]["ig"], without["matched"]["near"]["ig"]
    assert near["on_steps"] == 0 and near["at_value"] == near_without["at_value"]
    assert near["id_p5"]["diff"] == pytest.approx(near_without["id_p5"]["diff"])
    assert out["matched_at_identity"]["far"]["ig"]["at_value"] == without["matched_at_identity"]["far"]["ig"]["at_value"]
    with pytest.raises(ValueError, match="ending with the seed's full edit"):
        matched(seeds["far"], curves["ig"], {}, {}, steps=[names[:-1] for names in steps["far"]])


def test_step_curve_stops_the_edit_after_each_step():
    from benchmarks.interfacegan_judging import scored_trajectories, step_curve

    base = {"age": torch.tensor([30.0, 40.0]), "p_female": torch.tensor([0.9, 0.2]),
            "emb_dlib": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    traj = {"age": torch.tensor([[32.0, 35.0, 37.0], [38.0, 36.0, 36.0]]),
            "p_female": torch.tensor([[0.8, 0.4, 0.7], [0.1, 0.3, 0.3]]),
            "emb_dlib": torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])}
    valid = torch.tensor([[True, True, True], [True, True, False]])  # row 1 ended after 2 steps (its last held)
    curve = step_curve(base, traj, valid, torch.tensor([0, 1]), torch.tensor([0, 1]), 0.5)
    assert len(curve) == 3
    assert curve[0].age_N.tolist() == [2.0, 2.0] and curve[1].age_N.tolist() == [5.0, 4.0]  # + older / + younger
    assert curve[0].flip_N.tolist() == [False, False] and curve[1].flip_N.tolist() == [True, False]
    assert curve[2].flip_N.tolist() == [True, False]  # a flip at step 2 stays counted after the face flips back
    assert curve[1].flip_end_N.tolist() == [True, False] and curve[2].flip_end_N.tolist() == [False, False]
    assert figures(curve[0])["id_mean"] == pytest.approx(1.0) and figures(curve[1])["id_min"] == pytest.approx(0.0)
    full = scored_trajectories(base, traj, valid, torch.tensor([0, 1]), torch.tensor([0, 1]), 0.5)
    assert figures(curve[-1]) == figures(full)


def test_bootstrap_replicates_equal_figures_of_each_resample():
    noise = torch.Generator().manual_seed(6)
    s = linear_family(2.0, noise)
    s.valid_NT[::3, 2:] = False  # some episodes end early
    s.cos_NT[5, 1] = s.cos_NT[7, 0]  # a tie
    point, reps = bootstrap({"a": s}, 7, seed=11, chunk=3)
    rng = torch.Generator().manual_seed(11)
    order = s.base_N.argsort(stable=True).reshape(B, -1)
    for b in range(7):
        want = figures(s, order[torch.randint(B, (B,), generator=rng)].flatten())
        for f, v in want.items():
            assert reps["a"][f][b].item() == pytest.approx(v, rel=1e-9, abs=1e-12), (b, f)
    assert point["a"] == figures(s)
