"""Experiment C models: discriminator fakes, π/T/V, REINFORCE (no gradient across steps) vs the BPTT RNN."""
import json

import pytest
import pytorch_lightning as pl
import torch

from configs.schema import RLLoopConfig
from datamodules.mnist_pairs import MNISTPairsDataModule
from lightning_modules.autoencoder import AutoencoderModule
from lightning_modules.nets.transform import init_from_autoencoder
from lightning_modules.realism import FAKE_KINDS, RealismDiscriminatorModule, make_fakes
from lightning_modules.transform_rnn import TransformRNNModule
from rl.agents import POLICY_FILE, act, build_algorithm, load_policy, save_policy
from rl.envs import BatchedVectorEnv
from rl.loop import CURVE_FILE, load_train_state, train
from tests.test_transform_env import make_core, objective_of

SMALL = dict(code_dim=4, hidden=16, width=2)
OBS, PIXELS = 2 * 784 + 1, 784


def agents(**hparams):
    """The transform_pg algorithm (π, T and the baseline V) for experiment C's observation and image action."""
    torch.manual_seed(0)
    return build_algorithm("transform_pg", OBS, PIXELS, 1.0, **{**SMALL, **hparams})


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
    policy = agents().policy
    init_from_autoencoder(policy.pi, policy.transformer, ae)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(policy.transformer(x, torch.zeros(3, 4)), ae(x))  # T(x, 0) = Dec(Enc(x))
    with pytest.raises(ValueError, match="does not fit"):
        init_from_autoencoder(policy.pi, policy.transformer, AutoencoderModule(code_dim=8))


def _collected(core, algo, episodes):
    from tianshou.data import Collector, VectorReplayBuffer

    venv = BatchedVectorEnv(core)
    buffer = VectorReplayBuffer(64, len(venv))
    collector = Collector(algo, venv, buffer)
    collector.reset()
    algo.policy.is_within_training_step = True  # sample, as the trainer does while collecting
    collector.collect(n_episode=episodes)
    return buffer


def test_reinforce_trains_both_agents_without_gradient_across_steps():
    core, algo = make_core(num_envs=3, steps=2), agents()
    buffer = _collected(core, algo, 3)
    batch, _ = buffer.sample(0)  # the whole collection, in order
    assert len(batch) == 6 and batch.policy.pi_action.shape == (6, 4)
    means = capture_outputs(algo.policy.transformer)
    obs, a, image = (torch.as_tensor(batch.obs), torch.as_tensor(batch.policy.pi_action), torch.as_tensor(batch.act))
    log_prob, _ = algo.policy.log_prob(obs, a, image)
    # a step's log-prob depends on that step's T output only: images are data, no graph crosses steps
    assert torch.autograd.grad(log_prob[2], means[-1], retain_graph=True)[0][2].abs().sum() > 0
    assert torch.autograd.grad(log_prob[2], means[-1], retain_graph=True)[0][[0, 1, 3, 4, 5]].abs().sum() == 0
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in (("pi", algo.policy.pi), ("T", algo.policy.transformer), ("V", algo.value))}
    stats = algo.update(buffer=buffer, batch_size=None, repeat=1)
    assert torch.isfinite(torch.tensor([stats.loss, stats.pg, stats.value])).all()
    for name, net in (("pi", algo.policy.pi), ("T", algo.policy.transformer), ("V", algo.value)):
        assert any(not torch.equal(b, p) for b, p in zip(before[name], net.parameters())), name


def test_deterministic_act_is_the_means_and_generate_unrolls_it():
    core, algo = make_core(num_envs=2, steps=2), agents()
    obs = core.reset()
    image = act(algo, obs)  # evaluation: π's mean, then T's mean (no sampling)
    x = obs[:, :784].view(2, 1, 28, 28)
    mean_a = algo.policy.pi(x, obs[:, 784:1568].view(2, 1, 28, 28), obs[:, -1:])
    torch.testing.assert_close(image, algo.policy.transformer(x, mean_a).flatten(1).detach())
    torch.testing.assert_close(act(algo, obs), image)
    trajectory = algo.policy.generate(x, obs[:, 784:1568].view(2, 1, 28, 28), 2)
    torch.testing.assert_close(trajectory[0].flatten(1), image)


def test_rnn_backpropagates_through_time():
    torch.manual_seed(0)
    rnn = TransformRNNModule(rewards={"steps": 3}, **{k: SMALL[k] for k in ("code_dim", "hidden")})
    rnn._frozen["objective"] = objective_of(steps=3)
    means = capture_outputs(rnn.transformer)
    source, goal = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    loss = -rnn.returns(source, goal)["return"].mean()  # the training loss
    # the final loss reaches the first step's T output: the gradient crosses every step
    assert torch.autograd.grad(loss, means[0], retain_graph=True)[0].abs().sum() > 0
    loss.backward()
    assert all(p.grad is not None for p in rnn.transformer.decoder.parameters())


def test_rnn_fast_dev_run(idx_dir):
    rnn = TransformRNNModule(rewards={"steps": 2}, code_dim=4, hidden=16)
    rnn._frozen["objective"] = objective_of(steps=2)
    before = [p.detach().clone() for p in rnn.parameters()]
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(rnn, datamodule=MNISTPairsDataModule(source="idx", root=str(idx_dir), batch_size=8))
    assert any(not torch.equal(a, b) for a, b in zip(before, rnn.parameters()))
    assert rnn.generate(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), 2).shape == (2, 2, 1, 28, 28)


def test_agents_round_trip_and_bad_values(tmp_path):
    algo = agents()
    source, goal = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    loaded = load_policy(save_policy(algo, tmp_path / POLICY_FILE).parent)
    torch.testing.assert_close(loaded.generate(source, goal, 3), algo.policy.generate(source, goal, 3))
    with pytest.raises(ValueError, match="agent.code_dim=0 invalid"):
        agents(code_dim=0)
    with pytest.raises(ValueError, match="agent.lr_policy=-1.0 invalid"):
        agents(lr_policy=-1.0)
    with pytest.raises(ValueError, match="module.rewards.distance='ae' needs module.ae_checkpoint"):
        TransformRNNModule(rewards={"distance": "ae"})


def test_transform_pg_trains_and_resumes_through_the_one_loop(tmp_path):
    loop = RLLoopConfig(total_steps=48, epochs=3, collect_steps=8, repeat=1, test_episodes=4, show_progress=False)
    core = make_core(num_envs=4, steps=2)

    def run(folder, resume=False):
        algo = agents()
        return algo, train(algo, BatchedVectorEnv(core.spawn(4, 0)), BatchedVectorEnv(core.spawn(4, 9)), folder,
                           loop, seed=0, resume=resume)

    algo, stats = run(tmp_path / "full")
    assert stats["env_steps"] == 48 and stats["epochs"] == 3 and (tmp_path / "full" / POLICY_FILE).is_file()
    curve = json.loads((tmp_path / "full" / CURVE_FILE).read_text())
    assert sum("test_return" in row for row in curve) == 4  # Tianshou tests before training, then every epoch
    assert curve[-1]["episodes"] == 24 and curve[0]["env_steps"] == 0
    assert load_train_state(tmp_path / "full")["counters"][0] == 3
    # a run that stopped after epoch 1 continues from its state and ends at the same step count
    import rl.loop

    real, saves = rl.loop.atomic_torch_save, []

    def dies(obj, path):
        if path.name == rl.loop.TRAIN_STATE_FILE:
            saves.append(path)
            if len(saves) == 2:  # dies while writing epoch 2's state
                raise KeyboardInterrupt
        real(obj, path)
    rl.loop.atomic_torch_save = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "cut")
    finally:
        rl.loop.atomic_torch_save = real
    assert load_train_state(tmp_path / "cut")["counters"][0] == 1
    _, resumed = run(tmp_path / "cut", resume=True)
    assert resumed["resumed_from_epoch"] == 1 and resumed["env_steps"] == 48 and resumed["epochs"] == 3
