"""Schemas with defaults for every run config.

Precedence: these dataclass defaults -> the experiment YAML -> ``key=value`` overrides.
The ``module``/``data``/... sections are free-form here; the loader validates them against the
``__init__`` signature of the class their ``name`` picks from a registry.
"""
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from configs.schema_tools import NON_NEGATIVE, POSITIVE, Range
from utils.errors import UserError

Count = Annotated[int, POSITIVE]
"""An int >= 1 (checked when the config loads)."""
Count0 = Annotated[int, NON_NEGATIVE]
"""An int >= 0."""
NonNegative = Annotated[float, Range(0.0)]
Positive = Annotated[float, Range(0.0, low_open=True)]
Fraction = Annotated[float, Range(0.0, 1.0, low_open=True, high_open=True)]
"""A number in (0, 1)."""


@dataclass
class TrainerConfig:
    """The subset of ``pl.Trainer`` arguments a run may set."""

    max_epochs: Annotated[int, Range(-1)] = 10
    """Epochs to train (-1: until max_steps)."""
    max_steps: Annotated[int, Range(-1)] = -1
    """Optimizer steps to train (-1: until max_epochs)."""
    accelerator: str = "auto"
    """'cpu', 'gpu' or 'auto' (GPU when one is visible)."""
    devices: Union[int, str] = 1
    """Devices (GPUs, or CPU processes) per node: a count, or -1 / 'auto' (all visible). More than one
    trains data-parallel: one process per device, each on its share of every epoch's batches."""
    strategy: str = "auto"
    """How the processes train together: 'auto' (one process: none; several: 'ddp'), 'ddp' (Lightning starts
    the other processes by re-running the command line; srun and torchrun start them themselves),
    'ddp_spawn' (started from inside the fit: for ``fit()`` called in-process), ... (any ``pl.Trainer``
    strategy name)."""
    num_nodes: Count = 1
    """Machines of a distributed run (each runs ``devices`` processes), e.g. under SLURM's srun."""
    precision: str = "32-true"
    """Numeric precision, chosen here only ('32-true', 'bf16-mixed', ...)."""
    log_every_n_steps: Count = 20
    limit_train_batches: Union[int, float] = 1.0
    """Fraction (float) or number (int) of training batches per epoch."""
    limit_val_batches: Union[int, float] = 1.0
    limit_test_batches: Union[int, float] = 1.0
    gradient_clip_val: Optional[float] = None
    enable_progress_bar: bool = True
    fast_dev_run: bool = False
    """One batch of train/val/test, no checkpoints: a smoke test."""



def with_trainer_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A saved run config with the :class:`TrainerConfig` keys its ``trainer`` section lacks at their defaults,
    so a run saved before a trainer key existed still matches (and resumes as) the same config."""
    if not isinstance(saved.get("trainer"), dict):
        return saved
    return {**saved, "trainer": {**asdict(TrainerConfig()), **saved["trainer"]}}


def with_schema_defaults(saved: Dict[str, Any], schema: type) -> Dict[str, Any]:
    """A saved run config with the top-level keys of the dataclass ``schema`` it lacks at their defaults, and
    the keys its dataclass-typed sections lack (e.g. ``train`` of :class:`RLConfig`) at theirs: a run saved
    before a key existed still matches (and resumes as) the same config. Free-form sections stay as saved."""
    out = dict(saved)
    for f in fields(schema):
        if f.default is MISSING and f.default_factory is MISSING:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        if is_dataclass(default):
            if f.name not in out or isinstance(out[f.name], dict):
                out[f.name] = {**asdict(default), **(out.get(f.name) or {})}
        elif f.name not in out:
            out[f.name] = default
    return out


def with_rl_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """:func:`with_schema_defaults` for a saved ``rl.train`` config (e.g. one saved before ``device``)."""
    return with_schema_defaults(saved, RLConfig)


def saved_config_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A saved run config of either entry point with the keys it lacks at their defaults: ``rl.train``
    configs (those with an ``agent`` or ``env`` section) by :class:`RLConfig`, the others' trainer keys."""
    if isinstance(saved.get("agent"), dict) or isinstance(saved.get("env"), dict):
        return with_rl_defaults(saved)
    return with_trainer_defaults(saved)


@dataclass
class RunConfig:
    """What every run of an entry point has."""

    name: str = "run"
    """Run name: outputs go to ``<out_dir>/<name>/<timestamp>/``."""
    seed: int = 0
    """Seeds python, numpy and torch (and dataloader workers)."""
    out_dir: str = "runs"
    resume: Optional[str] = None
    """A run folder to continue (``fit``: from its ``checkpoints/last.ckpt``; ``rl.train``: from its
    ``train_state.pt``, with the same config), e.g. after a kill."""
    num_threads: Count0 = 0
    """torch intra-op threads (0: torch's default)."""


@dataclass
class FitConfig(RunConfig):
    """One ``python -m lightning_modules.fit`` run."""

    name: str = "autoencoder"
    module: Dict[str, Any] = field(default_factory=dict)
    """``name`` = LightningModule registry key; other keys = its __init__ arguments."""
    data: Dict[str, Any] = field(default_factory=dict)
    """``name`` = LightningDataModule registry key; other keys = its __init__ arguments."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: Optional[str] = None
    """Metric that selects the best checkpoint (default: the module's ``monitor``)."""
    monitor_mode: Optional[Literal["min", "max"]] = None
    """'min' or 'max' (default: the module's)."""
    ae_checkpoint: Optional[str] = None
    """Autoencoder checkpoint or run folder, for configs built on the AE (``${ae_checkpoint}``)."""


@dataclass
class RLLoopConfig:
    """Budget and collection settings of the training loop (``rl.loop.train``) and its envs."""

    total_steps: Count = 100_000
    """Environment steps, off-policy warm-up included."""
    epochs: Count0 = 10
    """The budget is split into this many epochs; the policy is tested after each. 0: no RL at all, the run
    keeps the starting policy (e.g. one trained by experiment A's ``env.gradient_start``)."""
    num_envs: Count = 64
    """Training environments (rows of the batched core)."""
    test_envs: Count = 64
    test_episodes: Optional[Count] = None
    """Episodes per test (default 4 × test_envs)."""
    batch_size: int = 256
    buffer_size: int = 100_000
    warmup_steps: Count0 = 5_000
    """Off-policy steps collected before learning starts."""
    warmup_actions: Literal["random", "policy"] = "random"
    """What the warm-up acts with: 'random', uniform actions over the box (Tianshou's examples), or 'policy',
    the starting policy with its exploration noise, so a warm-started agent's buffer starts around its start
    rather than over the whole box (not from the paper)."""
    collect_steps: Optional[Count] = None
    """Env steps per collection (default: one batched step off-policy, 2048 on-policy)."""
    update_per_step: Positive = 0.25
    """Off-policy gradient steps per collected env step."""
    repeat: Count = 10
    """On-policy passes over each collection."""
    vector: Literal["batched", "dummy"] = "batched"
    """'batched' (one core, every network once per step) or 'dummy' (Tianshou DummyVectorEnv over single envs)."""
    keep: Literal["best", "last"] = "best"
    """The policy a run saves as ``policy.pt``: 'best', the highest test return so far (Tianshou's ``save_best_fn``;
    the starting policy is tested first and counts, so a fine-tune that never beats its start keeps the start),
    or 'last', the policy after the final epoch (not from the paper)."""
    show_progress: bool = True
    strip_every: Count0 = 2
    """Every this many epochs, a PNG of trajectories from the evaluation pool in ``strips/`` (envs
    with an evaluation pool, i.e. face_age; 0 = never)."""


@dataclass
class RLConfig(RunConfig):
    """One ``python -m rl.train`` run."""

    name: str = "mnist_task"
    num_threads: int = 1
    """torch threads: 1 is 5-10x faster than 2 for these small nets on 2 cores."""
    env: Dict[str, Any] = field(default_factory=dict)
    """``name`` = environment registry key (rl/builders.py); other keys = its builder's arguments."""
    agent: Dict[str, Any] = field(default_factory=dict)
    """``name`` = a key of the agent table (``rl.agents.AGENTS``: td3, ppo, sac, transform_pg); other keys =
    fields of that agent's params dataclass."""
    train: RLLoopConfig = field(default_factory=RLLoopConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the env cores' networks, the agent's networks and evaluation run: 'cpu', 'cuda' (the current
    GPU; an error when torch sees none) or 'auto' (cuda when a GPU is visible, else cpu). Tianshou's
    collector and replay buffer stay in numpy on the host; only observations and actions cross."""
    calibrated: List[str] = field(default_factory=list)
    """Set by ``rl.train``, not by users: the dotted keys whose values the env computed at build time
    (e.g. ``env.mdp.p1`` from ``auto``); their computed values are what this run's config.yaml holds."""


@dataclass
class TransformRewards:
    """Experiment C's rewards, shared by the RL env (``env.rewards``), the BPTT baseline (``module.rewards``)
    and the benchmark (``objective``). Per step t = 1..T of a trajectory from x_s towards x_g:

        r_t = realism_weight · score(D(x_t)) − step_penalty
              + [last step] · (− distance_weight · dist(x_t, x_g) − [goal not reached] · max_step_penalty)

    The last step is step T, or the first whose distance is ≤ ``goal_tolerance`` (when set)."""

    steps: int = 5
    """T: steps from the source to the end of an episode."""
    realism_weight: float = 1.0
    realism_score: Literal["log_prob", "prob"] = "log_prob"
    """``log_prob``: log sigmoid(D) (non-saturating); ``prob``: sigmoid(D)."""
    distance: Literal["l2", "ae"] = "l2"
    """``l2``: pixel ‖x − g‖₂; ``ae``: RMS of the standardised AE-code difference (needs an AE checkpoint)."""
    distance_weight: float = 2.0
    step_penalty: float = 0.0
    """Not from the paper's default run: a cost per step (an option of the method)."""
    max_step_penalty: float = 0.0
    """A cost at the last step when the goal was not reached within ``goal_tolerance``."""
    goal_tolerance: Optional[float] = None
    """None: every episode has T steps; else it ends early once the distance is ≤ this."""

    def __post_init__(self):
        if int(self.steps) != self.steps or self.steps < 1:
            raise UserError(f"steps={self.steps} invalid: expected an int >= 1")
        for name in ("realism_weight", "distance_weight", "step_penalty", "max_step_penalty"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UserError(f"{name}={value} invalid: expected a finite number >= 0")
        if self.goal_tolerance is not None and not (math.isfinite(self.goal_tolerance) and self.goal_tolerance >= 0):
            raise UserError(f"goal_tolerance={self.goal_tolerance} invalid: expected a finite number >= 0 or null")
        if self.realism_score not in ("log_prob", "prob") or self.distance not in ("l2", "ae"):
            raise UserError(f"realism_score={self.realism_score!r} / distance={self.distance!r} invalid: expected "
                            "'log_prob' or 'prob' / 'l2' or 'ae'")
