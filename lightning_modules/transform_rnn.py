"""Experiment C's baseline: a recurrent net trained end to end by backpropagation through time.

Its recurrent state is the image: ``x_{t+1} = T(x_t, π(x_t, x_g, t/T))`` with the *same* π and T
architectures as the RL agents (:mod:`lightning_modules.nets.transform`), deterministic, for T
steps from x_s. The loss is minus the return of the shared rewards
(:class:`evaluation.transform.TransformObjective`: realism from the frozen discriminator at every
step, distance to the goal at the last), so both methods optimise the same objective and only
the training signal differs: here gradients flow through D, through every T and back across all
steps; the RL agents (:mod:`rl.transform_pg`) see only sampled rewards.

The frozen discriminator (and AE encoder, for ``distance='ae'``) are loaded from their
checkpoints in ``setup`` and kept out of this module's checkpoint: a loaded module generates
trajectories without them. π and T start from the autoencoder ``init_autoencoder`` (as the RL agents).
"""
import dataclasses
from typing import Optional

import torch

from configs.loader import as_dataclass
from configs.schema import TransformRewards
from evaluation.transform import TransformObjective
from lightning_modules.base import SharedStepModule
from lightning_modules.checkpoints import load_module
from lightning_modules.nets.transform import (
    PolicyNet,
    TransformNet,
    init_from_autoencoder,
    unroll,
)
from lightning_modules.realism import load_objective
from utils.errors import UserError


class TransformRNNModule(SharedStepModule):
    """(x_s, x_g) -> T intermediate images, trained by BPTT on −return (batches of ``mnist_pairs``)."""

    monitor = ("val/return", "max")

    def __init__(
        self,
        discriminator_checkpoint: str = "runs/realism_discriminator",
        ae_checkpoint: Optional[str] = None,
        rewards: TransformRewards = TransformRewards(),
        init_autoencoder: Optional[str] = None,
        code_dim: int = 32,
        action_bound: float = 2.0,
        code_scale: float = 10.0,
        hidden: int = 128,
        lr: float = 3e-4,
    ):
        super().__init__()
        self.rewards = as_dataclass(TransformRewards, rewards)
        if self.rewards.distance == "ae" and ae_checkpoint is None:
            raise UserError("module.rewards.distance='ae' needs module.ae_checkpoint")
        if not lr > 0:
            raise UserError(f"module.lr={lr} invalid: expected a number > 0")
        self.save_hyperparameters(ignore=["rewards"])
        self.hparams["rewards"] = dataclasses.asdict(self.rewards)  # plain values: checkpoints load weights-only
        self.policy = PolicyNet(code_dim, hidden, action_bound, code_scale)
        self.transformer = TransformNet(code_dim, code_scale)
        self._frozen = {}  # {"objective": TransformObjective}: a dict, so it is no submodule and not saved

    def forward(self, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor) -> torch.Tensor:
        """Trajectories T×N×1×28×28 (x_1 .. x_T) in (0, 1); differentiable."""
        return unroll(self.policy, self.transformer, source_N1HW, goal_N1HW, self.rewards.steps)

    def generate(self, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, steps: int) -> torch.Tensor:
        """Evaluation twin of :meth:`rl.transform_pg.TransformAgents.generate` (no grad)."""
        if steps != self.rewards.steps:
            raise UserError(f"this RNN was trained for {self.rewards.steps} steps, asked for {steps}")
        with torch.no_grad():
            return self(source_N1HW, goal_N1HW)

    def predict_step(self, batch, batch_idx):
        return self(batch["source"], batch["goal"])

    def configure_optimizers(self):
        params = [*self.policy.parameters(), *self.transformer.parameters()]
        return torch.optim.Adam(params, lr=self.hparams.lr)

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        if stage == "fit" and hp.init_autoencoder and self.global_step == 0:
            # a resumed run's weights are restored after setup, over these
            init_from_autoencoder(self.policy, self.transformer, load_module(hp.init_autoencoder, "autoencoder"))
        if "objective" in self._frozen:
            return
        ae = hp.ae_checkpoint if self.rewards.distance == "ae" else None
        reference = None
        if ae is not None:  # AE distances are standardised with the training digits' codes, as in the env
            reference = self.trainer.datamodule.splits["train"].images.float().div(255).unsqueeze(1)
        self._frozen["objective"] = load_objective(hp.discriminator_checkpoint, ae, reference, self.rewards)

    @property
    def objective(self) -> TransformObjective:
        """The frozen reward model, on this module's device."""
        objective = self._frozen["objective"]
        if self._frozen.get("device") != self.device:
            self._frozen["device"] = self.device
            objective.to(self.device)
        return objective

    def returns(self, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor) -> dict:
        """Trajectories and their rewards: ``images`` T×N×1×28×28, ``return`` N (differentiable), ``logit`` T×N."""
        images = self(source_N1HW, goal_N1HW)
        rewards = self.objective.trajectory_rewards(images, goal_N1HW)
        return {"images": images, "return": rewards["reward"].sum(0), "logit": rewards["logit"]}

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        source, goal = batch["source"], batch["goal"]
        out = self.returns(source, goal)
        loss = -out["return"].mean()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/return": out["return"].mean(),
                       f"{stage}/final_l2": self.objective.distance(out["images"][-1].detach(), goal, "l2").mean(),
                       f"{stage}/realism": torch.sigmoid(out["logit"].detach()).mean()},
                      prog_bar=stage != "test", batch_size=len(source))
        return loss
