"""Schemas OmegaConf can enforce, made from our dataclasses and signatures, and the fixed-choice checks.

OmegaConf validates keys and types of a structured config but knows no ``Literal``; here every
schema (a dataclass, or the keyword arguments of a class or function) is mirrored into a dataclass
OmegaConf accepts (``Literal[...]`` -> its base type, nested dataclasses mirrored too), and
:func:`check_choices` checks the ``Literal`` values after the merge, so a bad choice fails at load time.
A class that hands its ``**kwargs`` on declares ``kwargs_to = (callee, names)``: those keyword arguments of
``callee`` count as its own, with the callee's types and defaults (other ``**kwargs`` add no key).

Ranges are checked in the same two places, before anything is built:

- a field typed ``Annotated[int, Range(1)]`` (or any :class:`Range`) must lie in its range
  (:func:`check_choices`, with the ``Literal`` choices);
- :func:`check_values` walks every value of a loaded config, sections of registry classes included:
  a float must be finite (NaN or inf mean nothing for any key we have; a key that ever allows them goes
  in :data:`NONFINITE_OK`), and an int whose key names a size (:data:`SIZE_NAMES`: ``batch_size``,
  ``*_size(s)``, ``*_dim``, ``hidden``, ``width``, ``resolution``) must be >= 1, a seed, thread or worker
  count >= 0.
"""
import dataclasses
import functools
import inspect
import math
import re
import typing
from typing import Any, Dict, Mapping, Optional, Tuple

_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval a numeric config value must lie in, for ``Annotated[int, Range(1)]`` hints;
    ``None`` bounds are open-ended, ``*_open`` excludes the bound itself."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(1)
"""Counts and sizes: an int >= 1."""
NON_NEGATIVE = Range(0)

# int keys named like sizes, anywhere in a config (registry classes' arguments included), and their range
SIZE_NAMES: Tuple[Tuple[str, Range], ...] = (
    (r"(.*_)?batch_size|.*_sizes?|.*_dim|hidden|width|resolution", POSITIVE),
    (r"(.*_)?seeds?|num_workers|num_threads", NON_NEGATIVE),
)
NONFINITE_OK: Tuple[str, ...] = ()
"""Dotted keys whose floats may be NaN or inf (none so far)."""


def _target(obj: Any) -> Any:
    return obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj


def _params(obj: Any, extras: bool = False):
    """(name, type hint, default or _NO_DEFAULT) of a dataclass's fields or a callable's keyword arguments
    (``extras``: hints keep their ``Annotated`` metadata)."""
    if isinstance(obj, Mapping):  # a dict of defaults: types follow the default values
        return [(k, type(v) if isinstance(v, (bool, int, float, str)) else Any, v) for k, v in obj.items()]
    hints = typing.get_type_hints(_target(obj), include_extras=extras)
    if dataclasses.is_dataclass(obj):
        out = []
        for f in dataclasses.fields(obj):
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING else _NO_DEFAULT)
            out.append((f.name, hints.get(f.name, Any), default))
        return out
    out = []
    for name, param in inspect.signature(_target(obj)).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            out += _forwarded(obj, extras)
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = _NO_DEFAULT if param.default is inspect.Parameter.empty else param.default
        out.append((name, hints.get(name, Any), default))
    return out


def _forwarded(obj: Any, extras: bool):
    """What a class's ``**kwargs`` stand for: the parameters ``names`` of ``callee``, where the class declares
    ``kwargs_to = (callee, names)``; none without that declaration."""
    callee, names = getattr(obj, "kwargs_to", (None, ()))
    return [param for param in _params(callee, extras) if param[0] in names] if callee is not None else []


def _omegaconf_type(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return type(args[0])
    if dataclasses.is_dataclass(hint):
        return omegaconf_schema(hint)
    if origin in (tuple, typing.Tuple):
        return Any
    if origin in (list, typing.List):
        return typing.List[_omegaconf_type(args[0])] if args else list
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return typing.Optional[_omegaconf_type(inner[0])]
        if float in inner and int not in inner:  # OmegaConf's unions are strict: `p1=5` must fit Union[float, str]
            return typing.Union[(int, *args)]
    return hint


def _mirror_default(hint: Any, default: Any) -> Any:
    # a default instance of a mirrored dataclass becomes an instance of its mirror
    if dataclasses.is_dataclass(hint) and dataclasses.is_dataclass(default):
        mirror = omegaconf_schema(hint)
        return mirror(**{f.name: _mirror_default(_hint_of(hint, f.name), getattr(default, f.name))
                         for f in dataclasses.fields(default)})
    return default


def _hint_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls).get(name, Any)


@functools.lru_cache(maxsize=None)
def _cached_schema(obj: Any) -> type:
    fields = []
    for name, hint, default in _params(obj):
        kind = _omegaconf_type(hint)
        if default is _NO_DEFAULT:
            fields.append((name, kind))
        else:
            value = _mirror_default(hint, default)
            fields.append((name, kind, dataclasses.field(default_factory=lambda d=value: _copy(d))))
    fields.sort(key=len)  # dataclasses need fields without defaults first
    return dataclasses.make_dataclass(f"{getattr(obj, '__name__', 'Defaults')}Schema", fields)


def _copy(value: Any) -> Any:
    import copy
    return copy.deepcopy(value)


def omegaconf_schema(obj: Any) -> type:
    """A dataclass mirroring the typed fields of a dataclass, or the keyword arguments of a class's
    ``__init__`` or of a function (``Literal`` hints become their base type; checked by :func:`check_choices`)."""
    if isinstance(obj, Mapping):
        return _cached_schema.__wrapped__(obj)
    return _cached_schema(obj)


def _check_value(hint: Any, value: Any, key: str) -> Optional[str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        for rule in hint.__metadata__:
            if isinstance(rule, Range) and value is not None and not rule.holds(value):
                kind = "an int" if args[0] is int else "a number"
                return f"{key}={value!r} invalid: expected {kind} {rule}"
        return _check_value(args[0], value, key)
    if origin is typing.Literal:
        return None if value in args else f"{key}={value!r} is not allowed; expected one of {list(args)}"
    if value is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return check_choices(hint, value, prefix=f"{key}.")
    if origin in (list, typing.List) and args and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _check_value(args[0], item, f"{key}[{i}]")
            if problem:
                return problem
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _check_value(inner[0], value, key)
    return None


def check_choices(obj: Any, values: Dict[str, Any], prefix: str = "") -> Optional[str]:
    """The first fixed-choice (``Literal``) or range (``Annotated[..., Range]``) violation in ``values``
    against ``obj``'s fields, as a message; else None."""
    if isinstance(obj, Mapping):
        return None
    for name, hint, _ in _params(obj, extras=True):
        if name in values:
            problem = _check_value(hint, values[name], f"{prefix}{name}")
            if problem:
                return problem
    return None


def _size_rule(name: str) -> Optional[Range]:
    for pattern, rule in SIZE_NAMES:
        if re.fullmatch(pattern, name):
            return rule
    return None


def check_values(values: Any, prefix: str = "") -> Optional[str]:
    """The first non-finite float or out-of-range size (see the module docstring) in a loaded config
    (nested dicts and lists), as a one-line message naming the dotted key; else None."""
    if isinstance(values, Mapping):
        items = [(f"{prefix}{k}", str(k), v) for k, v in values.items()]
    else:
        return None
    for key, name, value in items:
        leaves = [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, (list, tuple)) else [(key, value)]
        for where, leaf in leaves:
            if isinstance(leaf, Mapping):
                problem = check_values(leaf, f"{where}.")
                if problem:
                    return problem
            elif isinstance(leaf, float) and not math.isfinite(leaf) and key not in NONFINITE_OK:
                return f"{where}={leaf} invalid: expected a finite number"
            elif isinstance(leaf, int) and not isinstance(leaf, bool):
                rule = _size_rule(name)
                if rule is not None and not rule.holds(leaf):
                    return f"{where}={leaf} invalid: expected an int {rule}"
    return None
