"""Untrained stand-ins for the speed suite: random-weight networks where an env's checkpoint is missing.

The speed suite measures throughput, which depends on the networks' shapes, not on their weights.
So that it runs on a fresh clone where nothing is trained, each missing checkpoint an env config
names is replaced by a checkpoint of a freshly initialised module of the same kind, built from the
``module`` section of the config that trains it (``configs/<name>.yaml``). The stand-in files live
in a temporary folder and go through the ordinary loader (:func:`lightning_modules.checkpoints.load_module`),
so the env is built exactly as with trained networks. Nothing outside the speed suite uses this.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List

import pytorch_lightning as pl
import torch

from configs import load_config
from lightning_modules import get_module_class
from lightning_modules.checkpoints import CHECKPOINT_TAG
from utils.errors import MissingFileError
from utils.runs import resolve_checkpoint

log = logging.getLogger(__name__)
# env -> {env config key holding a checkpoint: config (configs/<name>.yaml) whose module section builds it}
CHECKPOINT_KEYS = {
    "mnist_task": {"ae_checkpoint": "autoencoder", "gan_checkpoint": "latent_gan",
                   "classifier_checkpoint": "classifier"},
    "face_age": {"age_checkpoint": "age_regressor"},
}
NOT_A_PATH = {"packaged"}  # face_age's age_checkpoint='packaged': a shipped net, no checkpoint file


def is_missing(path: str) -> bool:
    """True when ``path`` names no checkpoint file and no folder holding runs (a fresh clone's ``runs/...``)."""
    try:
        resolve_checkpoint(path)
    except MissingFileError:
        return True
    return False  # unfinished runs raise a plain UserError: that is for the user to settle, not to stand in for


def write_stand_in(config: str, path: Path, seed: int) -> str:
    """A Lightning checkpoint at ``path`` of the module ``configs/<config>.yaml`` trains, with random weights;
    returns the module's registry name."""
    module_cfg = load_config(config, sections={"module": get_module_class})["module"]
    kind = module_cfg["name"]
    torch.manual_seed(seed)
    module = get_module_class(kind)(**{k: v for k, v in module_cfg.items() if k != "name"})
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__,
                CHECKPOINT_TAG: {"module": kind, "config": {"module": module_cfg, "stand_in": True}}}, path)
    return kind


def stand_in_missing(env: str, env_cfg: Dict[str, Any], folder: Path, seed: int = 0) -> List[Dict[str, str]]:
    """Point every missing checkpoint of ``env_cfg`` (edited in place) at a random-weight stand-in in ``folder``.

    Returns one record per stand-in: ``env``, ``key`` (the env config key), ``module`` (registry name),
    ``missing`` (the path that does not exist). Each is logged as a warning.
    """
    records = []
    for key, config in CHECKPOINT_KEYS.get(env, {}).items():
        path = env_cfg.get(key)
        if path is None or str(path) in NOT_A_PATH or not is_missing(str(path)):
            continue
        env_cfg[key] = str(folder / f"{env}_{key}.ckpt")
        module = write_stand_in(config, Path(env_cfg[key]), seed)
        log.warning("speed suite: %s.%s '%s' does not exist: timing an UNTRAINED %s with random weights of the "
                    "same shapes (configs/%s.yaml's module section); throughput only, its outputs mean nothing",
                    env, key, path, module, config)
        records.append({"env": env, "key": key, "module": module, "missing": path})
    return records
