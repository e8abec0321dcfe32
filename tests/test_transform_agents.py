"""Experiment C models: discriminator fakes, π/T/V, REINFORCE (no gradient across steps) vs the BPTT RNN."""
import pytest
import pytorch_lightning as pl
import torch

from datamodules.mnist_pairs import MNISTPairsDataModule
from evaluation.transform import TransformObjective
from lightning_modules.autoencoder import AutoencoderModule
from lightning_modules.nets.transform import init_from_autoencoder
from lightning_modules.realism import FAKE_KINDS, RealismDiscriminatorModule, make_fakes
from lightning_modules.transform_rnn import TransformRNNModule
from rl.transform_pg import TransformAgents, load_agents, reinforce_loss, rollout, save_agents
from tests.test_transform_env import MeanLogit, make_core

SMALL = dict(code_dim=4, hidden=16, width=2)


def capture_outputs(module):
    """Forward hook keeping every output of ``module`` (to ask autograd what depends on what)."""
    outputs = []
    module.register_forward_hook(lambda mod, inputs, out: outputs.append(out))
    return outputs


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_fakes_stay_images_and_differ_from_real(kind):
    real = torch.rand(16, 1, 28, 28).round()
    fake = make_fakes(real, [kind], generator=torch.Generator().manual_seed(0))
    assert fake.shape == real.shape and fake.min() >= 0 and fake.max() <= 1
    assert (fake - real).abs().flatten(1).sum(1).min() > 0  # every row corrupted


def test_discriminator_smoke_and_bad_fakes(idx_dir):
    module = RealismDiscriminatorModule(width=4)
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=MNISTPairsDataModule(source="idx", root=str(idx_dir), batch_size=8).digits)
    assert trainer.state.finished and module(torch.rand(3, 1, 28, 28)).shape == (3,)
    with pytest.raises(ValueError, match=r"module.fakes=\['noise', 'glitch'\] invalid"):
        RealismDiscriminatorModule(fakes=["noise", "glitch"])


def test_pairs_datamodule(idx_dir):
    data = MNISTPairsDataModule(source="idx", root=str(idx_dir), batch_size=8, goal_class="other")
    data.setup()
    batch = next(iter(data.val_dataloader()))
    assert batch["source"].shape == batch["goal"].shape == (6, 1, 28, 28)  # the whole 6-digit val split
    assert (batch["source_label"] != batch["goal_label"]).all()
    again = next(iter(data.val_dataloader()))
    assert torch.equal(batch["goal"], again["goal"])  # validation pairs are fixed


def test_transformer_starts_as_the_autoencoder():
    ae = AutoencoderModule(code_dim=4).eval()
    agents = TransformAgents(**SMALL)
    init_from_autoencoder(agents.policy, agents.transformer, ae)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(agents.transformer(x, torch.zeros(3, 4)), ae(x))  # T(x, 0) = Dec(Enc(x))
    with pytest.raises(ValueError, match="does not fit"):
        init_from_autoencoder(agents.policy, agents.transformer, AutoencoderModule(code_dim=8))


def test_reinforce_trains_both_agents_without_gradient_across_steps():
    torch.manual_seed(0)
    core, agents = make_core(num_envs=6, steps=3), TransformAgents(**SMALL)
    means = capture_outputs(agents.transformer)
    batch = rollout(core, agents)
    assert batch["reward"].shape == batch["log_prob"].shape == (3, 6)
    # the last step's log-prob depends on that step's T output, not on the first step's
    assert torch.autograd.grad(batch["log_prob"][2].sum(), means[2], retain_graph=True)[0].abs().sum() > 0
    across = torch.autograd.grad(batch["log_prob"][2].sum(), means[0], retain_graph=True, allow_unused=True)[0]
    assert across is None or across.abs().sum() == 0
    reinforce_loss(agents, batch)["loss"].backward()
    for net in (agents.policy, agents.transformer, agents.value):
        assert sum(p.grad.abs().sum() for p in net.parameters() if p.grad is not None) > 0


def test_rnn_backpropagates_through_time():
    torch.manual_seed(0)
    rnn = TransformRNNModule(steps=3, **{k: SMALL[k] for k in ("code_dim", "hidden")})
    rnn._frozen["objective"] = TransformObjective(MeanLogit(), steps=3)
    means = capture_outputs(rnn.transformer)
    source, goal = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    loss = -rnn.returns(source, goal)["return"].mean()  # the training loss
    # the final loss reaches the first step's T output: the gradient crosses every step
    assert torch.autograd.grad(loss, means[0], retain_graph=True)[0].abs().sum() > 0
    loss.backward()
    assert all(p.grad is not None for p in rnn.transformer.decoder.parameters())


def test_rnn_fast_dev_run(idx_dir):
    rnn = TransformRNNModule(steps=2, code_dim=4, hidden=16)
    rnn._frozen["objective"] = TransformObjective(MeanLogit(), steps=2)
    before = [p.detach().clone() for p in rnn.parameters()]
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(rnn, datamodule=MNISTPairsDataModule(source="idx", root=str(idx_dir), batch_size=8))
    assert any(not torch.equal(a, b) for a, b in zip(before, rnn.parameters()))
    assert rnn.generate(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), 2).shape == (2, 2, 1, 28, 28)


def test_agents_round_trip_and_bad_values(tmp_path):
    agents = TransformAgents(**SMALL)
    source, goal = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    loaded = load_agents(str(save_agents(agents, tmp_path / "policy.pt").parent))
    torch.testing.assert_close(loaded.generate(source, goal, 3), agents.generate(source, goal, 3))
    with pytest.raises(ValueError, match="agent.code_dim=0 invalid"):
        TransformAgents(code_dim=0)
    with pytest.raises(ValueError, match="agent.lr_policy=-1.0 invalid"):
        TransformAgents(lr_policy=-1.0)
    with pytest.raises(ValueError, match="module.distance='ae' needs module.ae_checkpoint"):
        TransformRNNModule(distance="ae")
