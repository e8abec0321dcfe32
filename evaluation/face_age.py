"""Experiment A rollouts: a policy and linear traversals along k_hyp on the same base faces
(the command line is ``python -m rl.evaluate RUN_FOLDER``).

Every base latent of the *evaluation* pool (unseen in training) is run in both directions for
``episode_len`` steps. Scores come from the env's own models (the reward age regressor and the
identity features F): this checks that the agent learned its MDP; the independent judges of the
InterfaceGAN comparison live in ``benchmarks/``. Every function takes a face core (or its factory)
built by ``rl.builders.face_age``; this module imports nothing of ``rl``.
"""
import io
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from evaluation.face_metrics import identity_distance
from utils.io import atomic_write_bytes


@torch.inference_mode()
def rollout(core, act_fn: Callable[[torch.Tensor], torch.Tensor], base_idx_N: torch.Tensor,
            direction_N: torch.Tensor, record: bool = False) -> Dict[str, torch.Tensor]:
    """Run episodes from chosen bases/directions until each ends; N rows of the core, one per episode.

    Returns N-tensors: ``buckets`` (new age buckets reached in the commanded direction),
    ``age_change`` (last age − base age, signed so that + is the commanded direction),
    ``identity_mean`` / ``identity_max`` (I_g over the steps taken), ``steps``, ``left_typical``,
    ``return`` (the env's undiscounted eq. 9 reward).
    ``record=True`` adds the trajectories: ``z_NTL`` (T = episode_len; after an episode ends its
    last latent is repeated, the edit's result) and ``valid_NT`` (the steps actually taken).
    A step the core refused (``info["stopped"]``, the env's identity stop) is not taken, except as an episode's
    first: then the episode is one step that stays at the base face (no edit).
    The episodes run on the core's device; the results are CPU tensors.
    """
    n, dev = len(base_idx_N), core.device
    base_idx_N, direction_N = torch.as_tensor(base_idx_N, device=dev), torch.as_tensor(direction_N, device=dev)
    ids = torch.arange(n, device=dev)
    obs = core.start(ids, base_idx_N, direction_N)
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    out = {k: torch.zeros(n, device=dev)
           for k in ("buckets", "age_change", "identity_sum", "identity_max", "steps", "return")}
    out["left_typical"] = torch.zeros(n, dtype=torch.bool, device=dev)
    sign = 1.0 - 2.0 * direction_N.float()
    steps = core.mdp.episode_len
    z_NTL = core.pool_PL[torch.as_tensor(base_idx_N).long()].cpu()[:, None, :].repeat(1, steps, 1)
    valid_NT = torch.zeros(n, steps, dtype=torch.bool, device=dev)
    t = 0
    while alive.any():
        rows = ids[alive]
        next_obs, reward, terminated, truncated, info = core.step(act_fn(obs[rows]), rows)
        obs = obs.clone()
        obs[rows] = next_obs
        alive[rows] = ~(terminated | truncated)
        if "stopped" in info:  # a refused step is not taken, unless it is the episode's first (the base, unedited)
            taken = ~info["stopped"] | (out["steps"][rows] == 0)
            rows, next_obs, reward, info = rows[taken], next_obs[taken], reward[taken], {
                k: v[taken] for k, v in info.items()}
        out["buckets"][rows] += info["hit"].float()
        out["return"][rows] += reward
        out["age_change"][rows] = sign[rows] * (info["age"] - info["age_base"])
        out["identity_sum"][rows] += info["identity"]
        out["identity_max"][rows] = torch.maximum(out["identity_max"][rows], info["identity"])
        out["steps"][rows] += 1
        out["left_typical"][rows] |= ~info["in_typical_set"]
        if record:
            z_NTL[rows.cpu(), t:] = next_obs[:, None, :core.latent_dim].cpu()  # held until overwritten
            valid_NT[rows, t] = True
        t += 1
    out["identity_mean"] = out.pop("identity_sum") / out["steps"]
    if record:
        out["z_NTL"], out["valid_NT"] = z_NTL, valid_NT
    return {k: v.cpu() for k, v in out.items()}


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
    w1 = core.mdp.traversal_w1(extent)

    def act(obs: torch.Tensor) -> torch.Tensor:
        action = torch.zeros(len(obs), core.act_dim, device=obs.device)
        action[:, core.latent_dim] = w1
        return action
    return act


def summarize(out: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Means over episodes (and the share of episodes that left the typical set)."""
    return {"buckets": out["buckets"].mean().item(), "return": out["return"].mean().item(),
            "age_change": out["age_change"].mean().item(),
            "identity_mean": out["identity_mean"].mean().item(), "identity_max": out["identity_max"].mean().item(),
            "steps": out["steps"].mean().item(), "left_typical_rate": out["left_typical"].float().mean().item()}


def versus_linear(results: Dict[str, Dict]) -> Dict[str, object]:
    """Where the policy sits against the linear traversals of :func:`compare` (the issue's bar).

    ``dominated``: the linear extents the policy beats outright, i.e. it reaches more buckets at a
    lower identity distance, both mean and max I_g (``linear_matched``, when present, counts
    too). ``beats_linear``: at least one dominated. ``matched``: the traversal whose max I_g
    equals the policy's, its buckets and the paired difference (policy − linear, mean ± standard
    error over the episodes); interpolating between the coarse extents would flatter the policy,
    as buckets grow concavely with I_g.
    """
    rl = results["rl"]
    lines = {k: v for k, v in results.items() if k.startswith("linear_")}
    dominated = sorted(k for k, lin in lines.items() if rl["buckets"] > lin["buckets"]
                       and rl["identity_mean"] < lin["identity_mean"] and rl["identity_max"] < lin["identity_max"])
    out: Dict[str, object] = {"dominated": dominated, "beats_linear": bool(dominated)}
    if "linear_matched" in results:
        out["matched"] = {k: results["linear_matched"][k]
                          for k in ("extent", "buckets", "identity_mean", "identity_max", "buckets_diff")}
    return out


def _matched_extent(core, base_idx, direction, target: float, lo: float, hi: float, iters: int = 5):
    # bisection on the extent for the linear traversal whose max I_g is the policy's (monotone in the extent)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        out = rollout(core, linear_policy(core, mid), base_idx, direction)
        if out["identity_max"].mean().item() < target:
            lo = mid
        else:
            hi = mid
    return mid, out


def _n_bases(factory, max_bases: Optional[int]) -> int:
    return len(factory.eval_pool_PL) if max_bases is None else min(max_bases, len(factory.eval_pool_PL))


def compare(factory, policy_act: Callable, extents: List[float], max_bases: Optional[int] = None) -> Dict[str, Dict]:
    """RL vs linear traversals on every evaluation base, both directions, same cores and steps.

    When the policy's max I_g (the edit's distance from the base face) lies between two extents'
    it also runs the linear traversal with the same max I_g (``linear_matched``, bisection) and
    the per-episode bucket difference to it (``buckets_diff``). Max, not mean: a policy that
    idles first and moves late lowers its mean I_g without editing any better.
    """
    n_bases = _n_bases(factory, max_bases)
    base_idx = torch.arange(n_bases).repeat(2)
    direction = torch.arange(2).repeat_interleave(n_bases)
    core = factory.eval_core(len(base_idx), seed=0)
    rl = rollout(core, policy_act, base_idx, direction)
    results = {"rl": summarize(rl)}
    extents = sorted(extents)
    for extent in extents:
        results[f"linear_{extent:g}"] = summarize(rollout(core, linear_policy(core, extent), base_idx, direction))
    target = results["rl"]["identity_max"]
    below = [e for e in extents if results[f"linear_{e:g}"]["identity_max"] < target]
    if below and below[-1] != extents[-1]:  # bracketed by the next extent up
        extent, lin = _matched_extent(core, base_idx, direction, target, below[-1], extents[len(below)])
        diff = rl["buckets"] - lin["buckets"]
        results["linear_matched"] = {"extent": extent, **summarize(lin), "buckets_diff": {
            "mean": diff.mean().item(), "stderr": (diff.std() / len(diff) ** 0.5).item()}}
    results["episodes"] = {"bases": n_bases, "directions": 2, "episode_len": core.mdp.episode_len}
    results["versus_linear"] = versus_linear(results)
    return results


def gradient_direction(core, direction: int, extent: float = 2.0, lam: float = 0.05, iters: int = 150,
                       batch_size: int = 32, lr: float = 0.02, seed: int = 0) -> torch.Tensor:
    """A unit latent direction for one command, found by gradient ascent *through* the networks (not RL).

    Starting at ±k_hyp, Adam maximises ``age change in the commanded direction − lam·I_g`` for a move
    of ``extent`` units from latents of ``core``'s pool (use the training pool). A reference for how
    far a single direction better than the InterfaceGAN boundary goes on this world's models: the
    headroom a policy's learned direction k_gen could take.
    """
    gen, age_model, features = (core.nets[k] for k in ("generator", "age_model", "features"))
    sign = 1.0 if direction == 0 else -1.0
    d = (sign * core.boundary_L.detach().clone()).requires_grad_(True)
    optim = torch.optim.Adam([d], lr=lr)
    rng = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        z = core.pool_PL[torch.randint(len(core.pool_PL), (batch_size,), generator=rng)]
        with torch.no_grad():
            img0 = gen(z)
            age0, feat0 = age_model(img0).reshape(-1), features(img0).flatten(1)
        img = gen(z + extent * d / d.norm())
        gain = sign * (age_model(img).reshape(-1) - age0)
        identity = identity_distance(features(img).flatten(1), feat0)
        loss = -gain.mean() + lam * identity.mean()
        d.grad, = torch.autograd.grad(loss, d)
        optim.step()
    return (d / d.norm()).detach()


def direction_curve(factory, directions: Dict[int, torch.Tensor], extents: List[float],
                    max_bases: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """Linear traversals along a chosen unit direction per command (0 ascending, 1 descending) on
    the evaluation bases, scored like :func:`compare`'s rows."""
    n = _n_bases(factory, max_bases)
    outs: Dict[str, List[Dict[str, torch.Tensor]]] = {}
    for c, d in directions.items():
        # the core moves along −boundary when descending, so it gets −d for c = 1
        core = factory.base.spawn(n, 0, pool_PL=factory.eval_pool_PL, boundary_L=d if c == 0 else -d)
        for extent in extents:
            outs.setdefault(f"direction_{extent:g}", []).append(
                rollout(core, linear_policy(core, extent), torch.arange(n), torch.full((n,), c)))
    return {k: summarize({key: torch.cat([o[key] for o in v]) for key in v[0]}) for k, v in outs.items()}


def table_lines(results: Dict[str, Dict]) -> List[str]:
    """One line per row of :func:`compare`'s results (and of the gradient-direction reference)."""
    rows = {**results, **{f"gradient_{k}": v for k, v in results.get("gradient_direction", {}).items()
                          if k.startswith("direction_")}}
    return [f"{name:>20}: return {r['return']:.1f}  buckets {r['buckets']:.2f}  age change {r['age_change']:.1f} y"
            f"  I_g mean {r['identity_mean']:.1f} max {r['identity_max']:.1f}  left typical set "
            f"{100 * r['left_typical_rate']:.1f} %"
            for name, r in rows.items() if name.startswith(("rl", "linear_", "gradient_direction_"))]
