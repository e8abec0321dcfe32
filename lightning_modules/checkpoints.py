"""Loading frozen LightningModules from checkpoints (files or run folders) by registry name."""
import logging
from typing import Any, Mapping, Optional

import torch

from lightning_modules import get_module_class
from utils.errors import UserError
from utils.runs import resolve_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT_TAG = "latentnav"  # key in a checkpoint dict: {"module": registry name, "config": run config}


def checkpoint_kind(ckpt: Mapping[str, Any]) -> Optional[str]:
    """The registry name stored in a checkpoint by :mod:`lightning_modules.fit`, if any."""
    return (ckpt.get(CHECKPOINT_TAG) or {}).get("module")


def load_module(path: str, kind: str, map_location: str = "cpu", freeze: bool = True):
    """Load a LightningModule of registry ``kind`` from a checkpoint file or run folder.

    Raises :class:`UserError` when the checkpoint is missing, unreadable or holds another kind of module.
    """
    ckpt_path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated or not a torch file
        raise UserError(f"checkpoint '{ckpt_path}' could not be read ({type(err).__name__}: {err})") from None
    stored = checkpoint_kind(ckpt)
    if stored is not None and stored != kind:
        raise UserError(f"checkpoint '{ckpt_path}' holds a '{stored}' module, expected '{kind}'")
    cls = get_module_class(kind)
    try:
        module = cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True)
    except (RuntimeError, TypeError, KeyError) as err:
        raise UserError(f"checkpoint '{ckpt_path}' does not fit a '{kind}' module ({err})") from None
    log.info("loaded %s from %s", kind, ckpt_path)
    if freeze:
        module.eval()
        module.requires_grad_(False)
    return module
