"""Digit tasks of experiment B: ``target = op(label, operand) mod 10`` (docs/experiment-b.md).

A :class:`TaskSet` is an ordered, duplicate-free list of ``(op, operand)`` pairs; a task id is an
index into it. Everything the environment needs is vectorised in torch (targets, one-hot
encoding), so one policy can serve every task of the set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import torch

from utils.errors import UserError

log = logging.getLogger(__name__)

OPS: tuple[str, ...] = ("+", "-", "*")
"""Canonical operators; their position is the op code used in the one-hot encoding."""
OP_ALIASES: dict[str, str] = {"+": "+", "-": "-", "*": "*", "add": "+", "sub": "-", "mul": "*"}
NUM_CLASSES = 10
ENCODING_DIM = len(OPS) + NUM_CLASSES
"""Width of :meth:`TaskSet.encode`: op one-hot (3) then operand one-hot (10)."""
PRESETS: dict[str, tuple[str, ...]] = {
    "paper": ("add:0-9",),  # addition of a task number 0..9 (2307.13978)
    "reference": ("+1",),  # the reference code only ever did +1
}

# "+3", "-0", "*7"  /  "add:0-9", "sub:2", "mul:1,3,5", "+:0-4"
_COMPACT = re.compile(r"^([+\-*])(.+)$")
_NAMED = re.compile(r"^([A-Za-z]+|[+\-*]):(.+)$")


def _canonical_op(op: str, spec: object) -> str:
    key = str(op).strip().lower()
    if key not in OP_ALIASES:
        raise UserError(
            f"unknown op {op!r} in task {spec!r}: expected one of {sorted(OP_ALIASES)}"
        )
    return OP_ALIASES[key]


def _operand(value: object, spec: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+", text) or not 0 <= int(text) <= 9:
        raise UserError(
            f"operand {value!r} in task {spec!r} is not an int in 0..9 (targets are mod 10)"
        )
    return int(text)


def _operands(text: str, spec: object) -> list[int]:
    """'3' -> [3]; '0-9' -> [0..9]; '1,3,5' -> [1, 3, 5]."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not sep:
            out.append(_operand(lo, spec))
            continue
        a, b = _operand(lo, spec), _operand(hi, spec)
        if a > b:
            raise UserError(f"empty operand range {part!r} in task {spec!r}: expected lo <= hi")
        out.extend(range(a, b + 1))
    return out


def _parse_one(spec: object) -> list[tuple[str, int]]:
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return [(_canonical_op(spec[0], spec), _operand(spec[1], spec))]
    if not isinstance(spec, str):
        raise UserError(f"task {spec!r} is neither a string like '+1' / 'add:0-9' nor an "
                        "(op, operand) pair")
    text = spec.strip()
    named = _NAMED.match(text)
    if named:
        op = _canonical_op(named.group(1), spec)
        return [(op, k) for k in _operands(named.group(2), spec)]
    compact = _COMPACT.match(text)
    if compact:
        return [(compact.group(1), _operand(compact.group(2), spec))]
    raise UserError(
        f"cannot parse task {spec!r}: expected '<op><operand>' such as '+1', '-3', '*2' or "
        f"'<op>:<operands>' such as 'add:0-9', 'mul:2,3' (ops {sorted(OP_ALIASES)})"
    )


class TaskSet:
    """An ordered set of digit operations; task ``i`` is ``tasks[i] = (op, operand)``."""

    def __init__(self, tasks: Iterable[tuple[str, int]]):
        pairs = [(_canonical_op(op, (op, k)), _operand(k, (op, k))) for op, k in tasks]
        if not pairs:
            raise UserError("task set is empty: expected at least one (op, operand) task")
        seen: set[tuple[str, int]] = set()
        for pair in pairs:
            if pair in seen:
                raise UserError(f"duplicate task {pair[0]}{pair[1]} in task set: each task once")
            seen.add(pair)
        self.tasks: tuple[tuple[str, int], ...] = tuple(pairs)
        self._op_codes = torch.tensor([OPS.index(op) for op, _ in pairs], dtype=torch.int64)
        self._operands = torch.tensor([k for _, k in pairs], dtype=torch.int64)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def parse(cls, spec: str | Sequence[object]) -> TaskSet:
        """Parse ``"add:0-9"``, a preset name (``"paper"``, ``"reference"``) or a list of specs.

        List items may be ``"+1"``-style strings, ``"add:0-9"``-style shorthands or
        ``(op, operand)`` pairs; order is kept, duplicates raise ``ValueError``.
        """
        if isinstance(spec, TaskSet):
            return spec
        if isinstance(spec, str):
            spec = list(PRESETS.get(spec.strip(), (spec,)))
        if not isinstance(spec, Sequence) or len(spec) == 0:
            raise UserError(f"task set {spec!r} is empty: expected e.g. ['+1'] or 'add:0-9'")
        return cls(pair for item in spec for pair in _parse_one(item))

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"TaskSet({self.names})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskSet) and other.tasks == self.tasks

    @property
    def names(self) -> list[str]:
        """Task names in id order, e.g. ``['+0', '+1', '*2']`` (parseable by :meth:`parse`)."""
        return [f"{op}{k}" for op, k in self.tasks]

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # cache per device so a GPU core does not copy the tables host->device every step
        if device not in self._cache:
            self._cache[device] = (self._op_codes.to(device), self._operands.to(device))
        return self._cache[device]

    def _check_ids(self, task_ids_N: torch.Tensor) -> torch.Tensor:
        if task_ids_N.dtype.is_floating_point or task_ids_N.dim() != 1:
            raise UserError(f"task ids must be a 1-d integer tensor, got {task_ids_N.dtype} "
                            f"{tuple(task_ids_N.shape)}")
        return task_ids_N.long()

    def targets(self, labels_N: torch.Tensor, task_ids_N: torch.Tensor) -> torch.Tensor:
        """Target digits ``op(label, operand) mod 10``.

        Args:
            labels_N: N int digit labels in 0..9.
            task_ids_N: N int task ids in ``0..len(self)-1``.
        Returns:
            N int64 targets in 0..9 (``torch.remainder`` keeps ``-`` results non-negative).
        """
        ids = self._check_ids(task_ids_N)
        op_codes, operands = self._tables(ids.device)
        op, k, labels = op_codes[ids], operands[ids], labels_N.long()
        out = torch.where(op == 0, labels + k, torch.where(op == 1, labels - k, labels * k))
        return torch.remainder(out, NUM_CLASSES)

    def encode(self, task_ids_N: torch.Tensor) -> torch.Tensor:
        """One-hot task encoding for observations.

        Args:
            task_ids_N: N int task ids.
        Returns:
            N×13 float32: op one-hot over ``OPS`` (3) then operand one-hot (10).
        """
        ids = self._check_ids(task_ids_N)
        op_codes, operands = self._tables(ids.device)
        op_1h = torch.nn.functional.one_hot(op_codes[ids], len(OPS))
        k_1h = torch.nn.functional.one_hot(operands[ids], NUM_CLASSES)
        return torch.cat([op_1h, k_1h], dim=1).float()
