"""Join separately trained face models into one ensemble checkpoint (not from the paper).

    python -m lightning_modules.join age_regressor OUT.ckpt RUN_OR_CKPT RUN_OR_CKPT [...]

``module.members=K`` trains K networks side by side, on the same batches, from one seed and one recipe. Networks
trained apart (other seeds, with and without domain-adversarial training) differ more, and an ensemble of them
reads age on generated faces more like an independent judge does (benchmarks/RESULTS.md). This command stacks the
members of every source into one :class:`~lightning_modules.nets.faces.FaceNetEnsemble` of the same kind and
writes it as an ordinary checkpoint: ``env.age_checkpoint`` and ``models.age_checkpoint`` take it like a trained
run, with its mean as A_reg and its members' concatenated features as F; a joined gender classifier goes to
``env.gender_checkpoint`` / ``models.gender_checkpoint`` and reads p_female from its members' mean logits. Nothing
is trained; the sources' domain classifiers (training-only heads) are left out, and the checkpoint records the
sources it was joined from.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import pytorch_lightning as pl

from lightning_modules import get_module_class
from lightning_modules.checkpoints import CHECKPOINT_TAG, load_module
from utils.cli import run_cli
from utils.errors import UserError
from utils.io import atomic_torch_save

log = logging.getLogger(__name__)
KINDS = ("age_regressor", "gender_classifier")
SHAPE_KEYS = ("backbone", "input_size", "age_offset", "age_scale")  # what every member must share (when present)


def join_members(kind: str, sources: Sequence[str]):
    """One module of registry ``kind`` whose ensemble holds every member of every source, in order."""
    if kind not in KINDS:
        raise UserError(f"kind={kind!r} invalid: expected one of {', '.join(KINDS)}")
    if len(sources) < 2:
        raise UserError(f"{len(sources)} source(s) given: expected 2 or more checkpoints or run folders to join")
    modules = [load_module(str(source), kind) for source in sources]
    first = modules[0].hparams
    for source, module in zip(sources[1:], modules[1:]):
        for key in SHAPE_KEYS:
            if key in first and module.hparams.get(key) != first[key]:
                raise UserError(f"'{source}' has {key}={module.hparams.get(key)!r}, expected {first[key]!r} "
                                f"(that of '{sources[0]}'): only models of one shape can be joined")
    members = [member for module in modules for member in module.members()]
    hparams = {**dict(first), "members": len(members), "domain_weight": 0.0, "pretrained_path": None}
    joined = get_module_class(kind)(**hparams)
    for target, member in zip(joined.members(), members):
        target.load_state_dict(member.state_dict())
    return joined.eval().requires_grad_(False)


def write_joined(kind: str, out: Path, sources: Sequence[str]) -> Path:
    """Join ``sources`` and save the result at ``out`` (refused if it exists; written atomically)."""
    out = Path(out)
    if out.exists():
        raise UserError(f"'{out}' already exists: expected a new checkpoint path")
    if not out.parent.is_dir():
        raise UserError(f"folder '{out.parent}' of '{out}' does not exist")
    joined = join_members(kind, sources)
    record = {"joined_from": [str(s) for s in sources], "module": {"name": kind, **dict(joined.hparams)}}
    atomic_torch_save({"state_dict": joined.state_dict(), "hyper_parameters": dict(joined.hparams),
                       "pytorch-lightning_version": pl.__version__,
                       CHECKPOINT_TAG: {"module": kind, "config": record}}, out)
    log.info("joined %d members of %d %s checkpoints into %s", joined.hparams.members, len(sources), kind, out)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", help=" or ".join(KINDS))
    parser.add_argument("out", help="the new checkpoint file")
    parser.add_argument("sources", nargs="+", help="checkpoints or run folders of that kind, all of one shape")
    args = parser.parse_args(argv)
    return run_cli(lambda: write_joined(args.kind, Path(args.out), args.sources))


if __name__ == "__main__":
    sys.exit(main())
