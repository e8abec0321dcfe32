"""Experiment A, part 2: the RL policy vs InterfaceGAN's linear traversals under independent judges.

``benchmarks/run.py --compare interfacegan`` (docs/experiment-a.md). The agent runs (given, reused or trained)
fix the env: generator, reward age model, unseen evaluation pool. InterfaceGAN's boundaries
(age; age ⟂ gender) are fitted on freshly sampled latents scored by the in-suite models, ``interfacegan.fits``
times on independent samples (the verdict averages over the fits and counts their spread); every
method starts from the same base latents, runs the env's number of steps in each commanded
direction, and every image is scored by judges that sit in no reward. Judging and figures:
``benchmarks/interfacegan_judging.py``; report: ``benchmarks/interfacegan_report.py``.
"""
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import tqdm

from benchmarks.interfacegan_judging import (
    DIRECTIONS,
    build_judges,
    cached,
    cached_columns,
    export_judged,
    judge_trajectories,
    per_direction,
    score_images,
    scored_trajectories,
    step_curve,
)
from benchmarks.launchers import Submit, job_pool
from benchmarks.stages import Stage, given_run, matching_run, resolve_stage, stage_job, trained
from configs import load_config
from configs.schema import RLConfig
from evaluation.face_age import rollout
from evaluation.face_metrics import flip_noise_floor
from evaluation.interfacegan import project_boundary, train_boundary
from evaluation.judges import build_judge
from lightning_modules.nets.generators import GENERATORS
from rl import train as rl_cli
from rl.agents import act, load_policy
from rl.builders import get_env_builder
from rl.builders.face_age import PACKAGED
from rl.builders.face_age_models import gender_probability, typical_latents
from rl.envs.face_age import typical_set
from utils.errors import MissingFileError, UserError
from utils.runs import check_output_file, resolve_checkpoint, run_info

log = logging.getLogger(__name__)
KINDS = ("plain", "conditional")  # InterfaceGAN's boundaries: age, and age with the gender direction projected out
# --quick: a ~2-minute smoke run (few bases, a tiny agent, a small boundary sample; auto models trained for one
# epoch when no run has that config); later overrides win
QUICK = ["models.overrides.age_regressor=[trainer.max_epochs=1,module.members=1]",
         "models.overrides.gender_classifier=[trainer.max_epochs=1]",
         "eval.bases=4", "eval.grid_bases=4", "eval.bootstrap=100", "interfacegan.samples=1000",
         "interfacegan.ratio=0.05", "interfacegan.extents=[1.5,3]",
         "agent_seeds=[0]", "agent_overrides=[train.show_progress=false,train.total_steps=512,train.epochs=1,"
         "train.num_envs=8,train.test_envs=4,train.collect_steps=256,train.batch_size=64,train.repeat=2,"
         "env.train_pool=1000,env.boundary_samples=500,env.boundary_ratio=0.05,env.calibration_samples=64]",
         "editors.gradient=[env.gradient_start.steps=4,env.gradient_start.batch_size=4,train.epochs=0,"
         "env.mdp.identity_cost=3]"]


def check_settings(bench: Dict[str, Any]) -> None:
    """Fail on bad values before anything heavy runs (one line naming the key)."""
    ev, ig = bench["eval"], bench["interfacegan"]
    bad = [d for d in ev["directions"] if d not in DIRECTIONS]
    if bad or not ev["directions"] or len(set(ev["directions"])) != len(ev["directions"]):
        raise UserError(f"eval.directions={ev['directions']} invalid: expected distinct values of {list(DIRECTIONS)}")
    if ev["facenet"] not in ("auto", "on", "off"):
        raise UserError(f"eval.facenet={ev['facenet']!r} invalid: expected 'auto', 'on' or 'off'")
    for key, value in (("eval.bases", ev["bases"]), ("eval.batch_size", ev["batch_size"]),
                       ("interfacegan.samples", ig["samples"])):
        if value < 1:
            raise UserError(f"{key}={value} invalid: expected an int >= 1")
    if not ig["extents"] or min(ig["extents"]) <= 0 or len(set(ig["extents"])) != len(ig["extents"]):
        raise UserError(f"interfacegan.extents={ig['extents']} invalid: expected distinct positive distances")
    if ev["export"] is not None:
        check_output_file(ev["export"], "eval.export")
    seeds = bench["agent_seeds"]
    if trains_agents(bench) and (not seeds or len(set(seeds)) != len(seeds)):
        raise UserError(f"agent_seeds={seeds} invalid: expected distinct seeds (or agent_runs=[run folders])")
    for path in bench["agent_runs"]:
        given_run(path, "agent_runs")
    for name in bench.get("editors") or {}:
        if not name.isidentifier() or name == RL_EDITOR or name.startswith("interfacegan"):
            raise UserError(f"editors.{name} invalid: expected a name like 'gradient' (letters, digits, _), "
                            f"not '{RL_EDITOR}' and not starting with 'interfacegan'")
    # the agents' configs load (overrides checked) before anything heavy runs
    for editor, overrides in editor_overrides(bench).items():
        if editor != RL_EDITOR or not bench["agent_runs"]:
            where = "agent_overrides" if editor == RL_EDITOR else f"editors.{editor}"
            try:
                cfg = load_config(bench["agent_config"], overrides, schema=RLConfig, sections=rl_cli.SECTIONS,
                                  values={"out_dir": bench["runs_dir"]})
            except UserError as err:
                raise type(err)(f"agent_config {bench['agent_config']} with {where}: {err}") from None
            _check_base_seed(ev["base_seed"], cfg["env"].get("data_seed"),
                             f"agent_config {bench['agent_config']} with {where}")
    check_models(bench)


def _check_base_seed(base_seed: Optional[int], data_seed: Any, whose: str) -> None:
    # the agents' data_seed drew the env's own pools: its first latents are the evaluation pool itself
    if base_seed is not None and base_seed == data_seed:
        raise UserError(f"eval.base_seed={base_seed} invalid: it is env.data_seed of {whose}, which drew the env's "
                        "own pools; expected another seed (or null for the env's evaluation pool)")


def trains_agents(bench: Dict[str, Any]) -> bool:
    """Whether some editor's runs are matched or trained per agent seed (they need the age model A_reg): the RL
    agent without ``agent_runs``, and every other editor."""
    return not bench["agent_runs"] or bool(bench.get("editors"))


MODEL_STAGES = {"age_checkpoint": "age_regressor", "gender_checkpoint": "gender_classifier", "generator": "face_gan"}
"""models.<key> -> the experiment config (configs/<name>.yaml) its 'auto' value trains or reuses."""
AGENT_MODELS = ("age_checkpoint", "generator")  # the models only the trained editors use (agent_runs keep their own)


def needed_models(bench: Dict[str, Any]) -> List[str]:
    """The ``models.<key>`` this comparison uses: the gender model always, the agents' models when it trains
    editors."""
    return [key for key in MODEL_STAGES if key not in AGENT_MODELS or trains_agents(bench)]


def _model_bench(bench: Dict[str, Any]) -> Dict[str, Any]:
    # the models section as benchmarks.stages sees stages: key -> given path or 'auto', with their overrides
    models = bench["models"]
    return {"runs_dir": bench["runs_dir"], "overrides": models["overrides"],
            "stages": {stage: models[key] for key, stage in MODEL_STAGES.items()}}


def check_models(bench: Dict[str, Any]) -> None:
    """Before anything heavy: a given model resolves, an 'auto' one's config loads with ``models.overrides``, and
    an 'auto' model with no run to reuse has its training data (one line naming the key otherwise)."""
    models, staged = bench["models"], _model_bench(bench)
    unknown = sorted(set(models["overrides"]) - set(MODEL_STAGES.values()))
    if unknown:
        raise UserError(f"models.overrides.{unknown[0]}: no such model; expected one of {sorted(MODEL_STAGES.values())}")
    for key in needed_models(bench):
        stage = MODEL_STAGES[key]
        if models[key] == PACKAGED or (key == "generator" and models[key] in GENERATORS):
            continue
        if models[key] != "auto":
            given_run(models[key], f"models.{key}")
            continue
        try:
            _, cfg = resolve_stage(staged, stage, stage, {}, rl=False)
        except UserError as err:
            raise type(err)(f"models.{key}=auto ({stage} with models.overrides.{stage}): {err}") from None
        root = None if cfg is None else (cfg.get("data") or {}).get("root")
        if root is not None and not Path(root).is_dir():
            raise MissingFileError(
                f"models.{key}=auto: no finished {stage} run with this config under {bench['runs_dir']}, and its "
                f"training data data.root='{root}' is not a folder: expected models.overrides.{stage}=[data.root=DIR], "
                f"a trained run (models.{key}=PATH) or models.{key}={PACKAGED}")


def model_job(bench: Dict[str, Any], key: str, submit: Optional[Submit] = None) -> Callable[[], Tuple[str, Optional[float]]]:
    """``models.<key>`` as a function that waits for (checkpoint or run folder or 'packaged', training seconds when
    trained here): as given, or for 'auto' the newest finished run of its experiment config (:data:`MODEL_STAGES`,
    with ``models.overrides``) under ``runs_dir``, trained first when there is none: here and now (``submit``
    None) or as a job of kind ``<model>`` on a launcher, so several models train at once."""
    value = bench["models"][key]
    if value != "auto":  # a path stays as given: it is part of the agents' configs that reused runs must match
        return lambda: (value, None)
    wait = stage_job(_model_bench(bench), submit, MODEL_STAGES[key], MODEL_STAGES[key], {})
    return lambda: (lambda stage: (str(stage.run), stage.wall_s))(wait())


def resolve_model(bench: Dict[str, Any], key: str) -> Tuple[str, Optional[float]]:
    """``models.<key>`` resolved here and now (:func:`model_job`)."""
    return model_job(bench, key)()


def _with_model(bench: Dict[str, Any], key: str, value: str) -> Dict[str, Any]:
    return {**bench, "models": {**bench["models"], key: value}}


def trained_runs(bench: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, List[Stage]], Dict[str, Optional[float]]]:
    """(bench with its models resolved, editor -> runs, model -> training seconds when trained here). Under
    ``launcher=ray`` the models to train are jobs at once and the agents queue as soon as A_reg exists (the
    gender model, which no agent needs, may still be training); under ``local`` everything runs one after another."""
    keys = needed_models(bench)
    wall_s: Dict[str, Optional[float]] = {}
    if bench["launcher"] != "ray":
        for key in keys:
            value, wall_s[MODEL_STAGES[key]] = resolve_model(bench, key)
            bench = _with_model(bench, key, value)
        return bench, editor_runs(bench), wall_s
    with job_pool(bench, 1) as submit:
        waits = {key: model_job(bench, key, submit) for key in keys}  # every model job queued before any wait
        for key in AGENT_MODELS:
            if key in waits:
                value, wall_s[MODEL_STAGES[key]] = waits.pop(key)()
                bench = _with_model(bench, key, value)
        by_editor = editor_runs(bench, submit)
        for key, wait in waits.items():
            value, wall_s[MODEL_STAGES[key]] = wait()
            bench = _with_model(bench, key, value)
    return bench, by_editor, wall_s


RL_EDITOR = "rl"  # the editor name of the agent_config runs (the paper's PPO by default)


def editor_overrides(bench: Dict[str, Any]) -> Dict[str, List[str]]:
    """Editor name -> the overrides of ``agent_config`` it trains with: ``rl`` first, then each of ``editors``
    (its runs named ``<agent_config>_<editor>``, unless its overrides name them)."""
    return {RL_EDITOR: list(bench["agent_overrides"]),
            **{name: [f"name={bench['agent_config']}_{name}", *bench["agent_overrides"], *extra]
               for name, extra in (bench.get("editors") or {}).items()}}


def agent_runs(bench: Dict[str, Any], submit: Optional[Submit] = None) -> List[Stage]:
    """The RL runs alone (no other editor is trained): ``agent_runs`` as given, else per seed a matching run or
    a fresh training (with its wall time): here, one seed after another (``submit`` None), or every seed at
    once as ``agent`` jobs of a launcher."""
    return editor_runs({**bench, "editors": {}}, submit)[RL_EDITOR]


def editor_runs(bench: Dict[str, Any], submit: Optional[Submit] = None) -> Dict[str, List[Stage]]:
    """Editor name -> its runs: ``agent_runs``, when given, are the ``rl`` editor's; every other editor (and
    ``rl`` without ``agent_runs``) has one per agent seed, a matching run or a fresh training of
    ``agent_config`` with the editor's overrides (:func:`editor_overrides`)."""
    given = [Stage(given_run(p, "agent_runs")) for p in bench["agent_runs"]]
    runs_dir = bench["runs_dir"]
    age, generator = ((resolve_model(bench, key)[0] for key in AGENT_MODELS) if trains_agents(bench)
                      else (PACKAGED, bench["models"]["generator"]))  # unused then
    env = {"env.age_checkpoint": age, "env.generator": generator,
           **({"env.identity_features": "pixels"} if age == PACKAGED else {})}
    waits: Dict[str, List[Callable[[], Stage]]] = {}
    for editor, overrides in editor_overrides(bench).items():
        if editor == RL_EDITOR and given:
            waits[editor] = [lambda stage=stage: stage for stage in given]
            continue
        for seed in bench["agent_seeds"]:
            cfg = load_config(bench["agent_config"], overrides, schema=RLConfig, sections=rl_cli.SECTIONS,
                              values={"out_dir": runs_dir, "seed": seed, **env})
            found = matching_run(Path(runs_dir), cfg["name"], cfg)
            if found is not None:
                log.warning("%s seed %d: reusing %s (same config)", editor, seed, found)
                waits.setdefault(editor, []).append(lambda run=found: Stage(run))
                continue
            log.warning("%s seed %d: no matching run in %s, training one%s", editor, seed, runs_dir,
                        "" if submit is None else " (as a job)")
            waits.setdefault(editor, []).append(trained(submit, "agent", cfg, rl=True))
    return {editor: [wait() for wait in ws] for editor, ws in waits.items()}


def build_envs(runs: List[Path]) -> List[Dict[str, Any]]:
    """Per run: its config, policy and env factory (one factory per distinct env config)."""
    cache: Dict[str, Any] = {}
    out = []
    for run in runs:
        cfg = run_info(run)
        key = json.dumps(cfg["env"], sort_keys=True)
        if key not in cache:
            cache[key] = get_env_builder(cfg["env"]["name"])(**{k: v for k, v in cfg["env"].items() if k != "name"})
        out.append({"run": run, "cfg": cfg, "factory": cache[key], "policy": load_policy(run)})
    return out


def gender_scorer(bench: Dict[str, Any]) -> Tuple[Callable, str]:
    """(images -> p_female N, checkpoint or 'packaged') of the model scoring the gender boundary's latents."""
    path = resolve_model(bench, "gender_checkpoint")[0]
    if path == PACKAGED:
        return build_judge("age_gender").p_female, PACKAGED
    return gender_probability(path), str(resolve_checkpoint(path))


def interfacegan_boundaries(bench: Dict[str, Any], generator, age_model: Callable, gender_fn: Callable):
    """InterfaceGAN's age boundary and the conditional one (age ⟂ gender), fitted on the same latents, once per
    ``interfacegan.fits``: fit k draws its ``interfacegan.samples`` latents and shuffles its SVM split with seed
    ``interfacegan.seed + k``, so the fits are independent repeats of the recipe.

    Returns ``(kind -> L float32 numpy unit vector, stats)``: kinds ``plain`` and ``conditional`` for the first
    fit, ``plain_fit<k>`` and ``conditional_fit<k>`` for fit k ≥ 1. ``stats`` holds the first fit's figures at its
    top level (as with one fit), every fit's under ``fits``, and with several fits the cosines between each
    pair of them under ``between_fits``.
    """
    ig = bench["interfacegan"]
    boundaries, per_fit = {}, []
    for k in range(ig["fits"]):
        seed = ig["seed"] + k
        z = generator.sample(ig["samples"], torch.Generator().manual_seed(seed))
        scores = score_images(generator, {"age": age_model, "p_female": gender_fn}, z, bench["eval"]["batch_size"])
        fit = dict(ratio=ig["ratio"], split=ig["split"], seed=seed, svm_c=ig["svm_c"])
        age_b, age_stats = train_boundary(z, scores["age"], **fit)
        gender_b, gender_stats = train_boundary(z, scores["p_female"], **fit)
        conditional = project_boundary(age_b, gender_b)
        boundaries.update({fit_kind("plain", k): age_b, fit_kind("conditional", k): conditional})
        per_fit.append({"age": age_stats, "gender": gender_stats, "samples": ig["samples"], "seed": seed,
                        "cos_age_gender": float(age_b @ gender_b), "cos_conditional_age": float(conditional @ age_b),
                        "cos_conditional_gender": float(conditional @ gender_b)})
    stats = {**per_fit[0], "fits": per_fit}
    if ig["fits"] > 1:
        stats["between_fits"] = {kind: [float(boundaries[fit_kind(kind, i)] @ boundaries[fit_kind(kind, j)])
                                        for i in range(ig["fits"]) for j in range(i + 1, ig["fits"])]
                                 for kind in KINDS}
    return boundaries, stats


def fit_kind(kind: str, k: int) -> str:
    """The boundary name of ``kind`` (``plain``, ``conditional``) in fit ``k`` (the first fit keeps the bare name)."""
    return f"{kind}_fit{k}" if k else kind


def interfacegan_ladder(base_z_NL: torch.Tensor, direction_N: torch.Tensor, boundary_L, extents: List[float],
                       steps: int) -> Tuple[torch.Tensor, Dict[float, List[int]]]:
    """Every distinct step of the traversals of all ``extents`` along one boundary, for judging once.

    Extent e's step k lies ``e·k/steps`` boundary units from the base along ±boundary (+ older); steps that
    several extents share (1·4/10 = 2·2/10) are one column. Returns ``(z N×P×L, extent -> its columns, k = 1..steps)``.
    """
    distance = {(e, k): round(e * k / steps, 9) for e in extents for k in range(1, steps + 1)}
    columns = sorted(set(distance.values()))
    t_P = torch.tensor(columns, dtype=torch.float64)
    sign_N = 1.0 - 2.0 * direction_N.double()
    n = torch.as_tensor(boundary_L, dtype=torch.float64).flatten()
    n = n / n.norm()
    z = (base_z_NL.double()[:, None, :] + (sign_N[:, None] * t_P[None, :])[..., None] * n).float()
    return z, {e: [columns.index(distance[(e, k)]) for k in range(1, steps + 1)] for e in extents}


def interfacegan_trajectories(base_z_NL: torch.Tensor, direction_N: torch.Tensor, boundary_L, extent: float,
                              steps: int) -> torch.Tensor:
    """N×steps×L: each base moved ``extent·k/steps`` along ±boundary (+ older), k = 1..steps."""
    z, columns = interfacegan_ladder(base_z_NL, direction_N, boundary_L, [extent], steps)
    return z[:, columns[extent]]


def rl_trajectories(env: Dict[str, Any], base_idx_N: torch.Tensor, direction_N: torch.Tensor,
                    pool_PL: Optional[torch.Tensor] = None):
    """(z_NTL, valid_NT) of the policy's deterministic episodes from the bases ``pool_PL[base_idx_N]`` (None: the
    env's own evaluation pool)."""
    factory = env["factory"]
    core = (factory.eval_core(len(base_idx_N), seed=0) if pool_PL is None
            else factory.base.spawn(len(base_idx_N), 0, pool_PL=pool_PL))
    out = rollout(core, lambda obs: act(env["policy"], obs), base_idx_N, direction_N, record=True)
    return out["z_NTL"], out["valid_NT"]


def _bases(ev: Dict[str, Any], envs: List[Dict[str, Any]]):
    # eval.bases latents, each in every direction; all runs must share the env they were trained in. The latents
    # are the first of the env's evaluation pool, or with eval.base_seed a fresh typical-set draw no run has seen
    pool, n, seed = envs[0]["factory"].eval_pool_PL, ev["bases"], ev["base_seed"]
    if seed is None and n > len(pool):
        raise UserError(f"eval.bases={n} exceeds the env's evaluation pool of {len(pool)} latents (env.eval_pool)")
    for env in envs[1:]:
        other = env["factory"]
        if (other.eval_pool_PL.shape[1] != pool.shape[1] or len(other.eval_pool_PL) < min(n, len(pool))
                or not torch.equal(other.eval_pool_PL[:n], pool[:n])
                or other.base.mdp.episode_len != envs[0]["factory"].base.mdp.episode_len):
            raise UserError(f"agent run {env['run']} has other base latents or episode length than "
                            f"{envs[0]['run']}: expected runs of one env config (same generator, data_seed)")
    if seed is not None:
        _check_base_seed(seed, envs[0]["cfg"]["env"]["data_seed"], "the agent runs")  # given runs: known only here
        base = envs[0]["factory"].base
        pool = typical_latents(base.nets["generator"], n, base.epsilon, seed)
        log.warning("bases: %d fresh typical-set latents drawn with eval.base_seed=%d (not the env's evaluation "
                    "pool: no run has seen them)", n, seed)
    dirs = [DIRECTIONS[d] for d in ev["directions"]]
    return pool[:n].clone(), torch.arange(n).repeat(len(dirs)), torch.tensor(dirs).repeat_interleave(n)


def _roles(envs: List[Dict[str, Any]], gender_model: str) -> Dict[str, Any]:
    agents = {str(e["run"]): {k: e["cfg"]["env"][k] for k in ("generator", "age_checkpoint", "identity_features")}
              for e in envs}
    packaged_age = any(a["age_checkpoint"] == PACKAGED for a in agents.values())
    notes = ["the judges never enter a reward; InterfaceGAN's boundaries are scored by the in-suite models"]
    if packaged_age:
        notes.append("NOT INDEPENDENT: the packaged age net is the reward's age model (no trained age regressor "
                     "was given) and also the age judge: judged age changes are not independent")
    if gender_model == PACKAGED:
        notes.append("NOT INDEPENDENT for the conditional boundary: the packaged gender net scored its latents "
                     "and also judges gender flips")
    return {"agents": agents, "reward_age_model": "env.age_checkpoint of each agent run (A_reg)",
            "identity_features_F": "env.identity_features of each agent run",
            "age_boundary_scorer": f"the reward age model of {envs[0]['run']}",
            "gender_boundary_scorer": gender_model, "age_judge_independent": not packaged_age, "notes": notes}


def _k_hyp_cosines(envs: List[Dict[str, Any]], boundaries: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    return {str(e["run"]): {k: float(e["factory"].boundary_L.numpy() @ b) for k, b in boundaries.items()}
            for e in envs}


def _trajectories(envs, boundaries, base_z, base_idx, direction, extents, steps, pool_PL=None):
    """(name -> (z N×T×L, valid N×T) of the learned editors and the first fit's InterfaceGAN rows, kind ->
    (InterfaceGAN ladder, method name -> its columns) of every fit, editor -> its methods' names in order); the
    editors start from ``pool_PL[base_idx]`` (None: their env's pool). The other fits' rows exist only in their
    ladders: they enter the trade-off curves, not the table, the grids or the export."""
    out: Dict[str, Tuple] = {}
    editors: Dict[str, List[str]] = {}
    for env in tqdm.tqdm(envs, desc="rolling out the learned editors", unit="run", dynamic_ncols=True):
        name = f"{env['editor']}_seed{env['cfg']['seed']}"
        name = name if name not in out else f"{name}_{env['run'].name}"
        out[name] = rl_trajectories(env, base_idx, direction, pool_PL)
        editors.setdefault(env["editor"], []).append(name)
    ladders = {}
    for kind, boundary in boundaries.items():
        z, columns = interfacegan_ladder(base_z[base_idx], direction, boundary, extents, steps)
        ladders[kind] = (z, {f"interfacegan_{kind}_{e:g}": cols for e, cols in columns.items()})
    for extent in extents:  # the table's order: extent, then kind
        for kind in KINDS:
            z, names = ladders[kind]
            name = f"interfacegan_{kind}_{extent:g}"
            out[name] = (z[:, names[name]], torch.ones(len(z), steps, dtype=torch.bool))
    return out, ladders, editors


def judge_cache_tag(roles: Dict[str, Any], scores: List[str], env_cfg: Dict[str, Any]) -> str:
    """What judged scores depend on besides the latents: the judges, and of the agents' env only the generator
    (it draws the faces) and the reward model (its ages are a score column). Agent options such as a warm start
    or the env's own boundary leave it unchanged, so changing them does not judge the InterfaceGAN ladders again."""
    views = int(env_cfg.get("age_views", 1))
    reward = {"age_checkpoint": env_cfg.get("age_checkpoint"), "age_views": views,
              **({"data_seed": env_cfg.get("data_seed")} if views > 1 else {})}  # seeds the random views
    return json.dumps({"judges": roles, "scores": scores, "generator": env_cfg.get("generator"), "reward": reward},
                      sort_keys=True)


def _judge_all(generator, fns, trajectories, ladders, ev, cache_dir, tag) -> Dict[str, Dict]:
    """name -> judged scores (N×T(×F)): the learned editors' episodes one by one, each InterfaceGAN ladder once
    (its distances from the base cached one by one)."""
    def judge(z, valid, title):
        return cached(cache_dir, tag, z, valid, lambda: judge_trajectories(
            generator, fns, z, valid, ev["batch_size"], progress=title, workers=judge_workers(ev)))

    def judge_columns(z, title):
        return judge_trajectories(generator, fns, z, torch.ones(z.shape[:2], dtype=torch.bool), ev["batch_size"],
                                  progress=f"{title} ({z.shape[1]} distinct steps to judge)", workers=judge_workers(ev))

    judged = {name: judge(z, valid, f"judging {name}") for name, (z, valid) in trajectories.items()
              if not name.startswith("interfacegan_")}
    for kind, (z, names) in ladders.items():
        full = cached_columns(cache_dir, tag, z, lambda todo: judge_columns(todo, f"judging interfacegan_{kind}"))
        judged.update({name: {k: v[:, cols] for k, v in full.items()} for name, cols in names.items()})
    return judged


def judge_workers(ev: Dict[str, Any]) -> int:
    """``eval.workers``, or the CPUs this process may use when it is null."""
    return ev["workers"] or len(os.sched_getaffinity(0))


def _families(editors: Dict[str, List[str]], extents: List[float], steps: int, fits: int) -> Dict[str, Dict[str, List]]:
    """The trade-off analysis's groups: editors (each editor: every seed's method, in the table's order),
    baseline curves (per boundary kind, per fit its methods in extent order) and the editors' step curves (per
    editor, per seed: its edit stopped after 1, 2, ... steps, ending with the full edit)."""
    curves = {f"interfacegan_{kind}": [[f"interfacegan_{fit_kind(kind, k)}_{e:g}" for e in sorted(extents)]
                                       for k in range(fits)] for kind in KINDS}
    step_curves = {editor: [[f"{name}_step{k}" for k in range(1, steps)] + [name] for name in names]
                   for editor, names in editors.items()}
    return {"editors": editors, "curves": curves, "steps": step_curves}


def compare(bench: Dict[str, Any]) -> Dict[str, Any]:
    """Every method's trajectories from the same bases, judged; returns the results for the report."""
    torch.set_num_threads(bench["num_threads"])
    check_settings(bench)
    ev = bench["eval"]
    bench, by_editor, model_wall_s = trained_runs(bench)  # an 'auto' model is reused or trained first, once
    stages = [(editor, stage) for editor, runs in by_editor.items() for stage in runs]
    envs = build_envs([stage.run for _, stage in stages])
    for env, (editor, _) in zip(envs, stages):
        env["editor"] = editor
    ref = envs[0]["factory"].base
    base_z, base_idx, direction = _bases(ev, envs)
    generator, age_model = ref.nets["generator"], ref.nets["age_model"]
    gender_fn, gender_role = gender_scorer(bench)
    boundaries, boundary_stats = interfacegan_boundaries(bench, generator, age_model, gender_fn)
    fns, roles, age_gender = build_judges(ev)
    fns["reward_age"] = age_model
    steps, extents = ref.mdp.episode_len, bench["interfacegan"]["extents"]
    trajectories, ladders, editors = _trajectories(envs, boundaries, base_z, base_idx, direction, extents, steps,
                                                   pool_PL=None if ev["base_seed"] is None else base_z)
    base_scores = score_images(generator, fns, base_z, ev["batch_size"], "judging the bases", judge_workers(ev))
    base = {k: v[base_idx] for k, v in base_scores.items()}
    env_info = {"bucket_width": ref.mdp.bucket_width, "age_min": ref.mdp.age_min, "age_max": ref.mdp.age_max}
    cache_dir = Path(bench["runs_dir"]) / "judge_cache" if ev["cache"] else None
    tag = judge_cache_tag(roles, sorted(fns), envs[0]["cfg"]["env"])
    start = time.time()
    judged = _judge_all(generator, fns, trajectories, ladders, ev, cache_dir, tag)
    log.warning("every method judged in %.0f s (%d judging processes)", time.time() - start, judge_workers(ev))
    methods, scored = {}, {}
    for name, (z, valid) in trajectories.items():
        outside = ~typical_set(z.reshape(-1, z.shape[2]), ref.epsilon).reshape(valid.shape)
        methods[name] = per_direction(base, judged[name], valid, outside, direction, env_info, ev["flip_threshold"])
        scored[name] = scored_trajectories(base, judged[name], valid, base_idx, direction, ev["flip_threshold"])
        log.warning("%s: %s", name, methods[name]["all"])
    families = _families(editors, extents, steps, bench["interfacegan"]["fits"])
    for _, names in ladders.values():  # the other fits' rows: curve points only
        for name in (n for n in names if n not in trajectories):
            scored[name] = scored_trajectories(base, judged[name], torch.ones(len(base_idx), steps, dtype=torch.bool),
                                               base_idx, direction, ev["flip_threshold"])
    for names in families["steps"].values():
        for seq in names:
            full = seq[-1]
            curve = step_curve(base, judged[full], trajectories[full][1], base_idx, direction, ev["flip_threshold"])
            scored.update(zip(seq[:-1], curve[:-1]))
    if ev["export"] is not None:
        export_judged(ev["export"], generator, base_z, base_idx, direction, trajectories, ev["batch_size"])
    floor = None
    if ev["noise_floor"]:
        floor = {"step": min(extents) / steps, "steps": steps}
        floor["rate"] = flip_noise_floor(generator, age_gender.p_female, base_z, floor["step"], steps,
                                         seed=bench["seed"], threshold=ev["flip_threshold"])
    return {"methods": methods, "scored": scored, "families": families,
            "trajectories": trajectories, "base_z": base_z, "base_idx": base_idx,
            "direction": direction, "boundary_stats": boundary_stats, "noise_floor": floor,
            "k_hyp_cosines": _k_hyp_cosines(envs, boundaries), "roles": {**roles, **_roles(envs, gender_role)},
            "runs": [str(e["run"]) for e in envs], "generator": generator,
            "stage_wall_s": {**{k: v for k, v in model_wall_s.items() if v is not None},
                             **{("agent" if ed == RL_EDITOR else ed) + f"_seed{e['cfg']['seed']}": st.wall_s
                                for e, (ed, st) in zip(envs, stages) if st.wall_s is not None}},
            "env": {"episode_len": steps, "epsilon": ref.epsilon, **env_info, "bases": ev["bases"],
                    "base_seed": ev["base_seed"],
                    "eval_pool": len(envs[0]["factory"].eval_pool_PL), "directions": ev["directions"]}}
