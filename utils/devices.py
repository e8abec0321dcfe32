"""Where an entry point's networks run: ``device=cpu|cuda|auto`` resolved to a torch device, once, up front.

``auto`` picks the first CUDA GPU when torch sees one and the CPU otherwise, so a CPU-only machine runs as
it always did; ``cuda`` on a machine without a GPU is a one-line :class:`UserError` before any work starts.
"""
import logging
from typing import Tuple

import torch

from utils.errors import UserError

log = logging.getLogger(__name__)
DEVICES: Tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(requested: str, key: str = "device", announce: str = "") -> torch.device:
    """The torch device for ``requested`` (one of :data:`DEVICES`, case-insensitive).

    ``cuda`` becomes the concrete ``cuda:<current>`` so devices compare equal to tensors' ``.device``.
    ``announce`` (e.g. "the env cores, the agent and evaluation"): log the choice loudly (a warning)
    naming what runs there. Raises :class:`UserError` (naming ``key`` and the value) for an unknown value
    or for ``cuda`` when ``torch.cuda.is_available()`` is False.
    """
    value = str(requested).strip().lower()
    if value not in DEVICES:
        raise UserError(f"{key}={requested!r} invalid: expected one of {list(DEVICES)}")
    available = torch.cuda.is_available()
    if value == "cuda" and not available:
        raise UserError(f"{key}='cuda' invalid: torch sees no CUDA GPU on this machine "
                        f"(torch.cuda.is_available() is False); expected {key}=cpu or {key}=auto")
    use_cuda = value == "cuda" or (value == "auto" and available)
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
    if announce:
        name = f" ({torch.cuda.get_device_name(device)})" if use_cuda else ""
        log.warning("device: %s%s for %s (%s=%s)", device, name, announce, key, value)
    return device
