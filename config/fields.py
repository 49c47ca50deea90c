"""What a settings dataclass's field says of itself, so that every front end reads one description.

A job's spec (jobs/<kind>.py) and the configurations it nests (VisAttnConfig, ClipConfig, TrainConfig, ...)
are dataclasses. A field made with :func:`param` carries its help, its choices, its bounds and, where the
command line or a form name it otherwise than the field, its flag and label. From that one description:

- the CLI's options are built (vitpro/commands/spec_options.py), so their defaults and help are the spec's;
- the web form's widgets are built (ui/spec_widgets.py), with the same defaults and labels;
- a recipe stage (``vitpro run``) is read into the spec with :func:`build`, every key checked;
- the job's stored parameters are the spec itself made plain (:func:`to_plain`), and the worker's
  handler gets the spec back (:func:`from_plain`) rather than a dict of string keys.

A check that fails raises :class:`FieldError` naming the field; each front end says it in its own terms
(``--batch-size``, "Batch size", ``stages[2].grounding.batch_size``), with no message rewriting.

The lowest layer (config): curation's and the trainer's configurations use it as well as the job specs.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Union


class FieldError(ValueError):
    """A value a field cannot take. ``field`` is its dotted name within the spec ("config.segment");
    ``str()`` is the message alone, so each front end can put the field's own name in front of it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def within(self, prefix: str) -> "FieldError":
        """The same error with its field named from an outer spec ("config" + "segment")."""
        return FieldError(f"{prefix}.{self.field}" if self.field else prefix, self.message)


def about(field: str, exc: Exception) -> Exception:
    """``exc`` marked as being about ``field``, its class kept (callers catch a SourceError as such): the
    front ends read ``field`` and ``message`` off any exception, as off a :class:`FieldError`."""
    exc.field = field  # type: ignore[attr-defined]
    exc.message = str(exc)  # type: ignore[attr-defined]
    return exc


def field_of(exc: Exception) -> str | None:
    """The field an error is about, if it says."""
    return getattr(exc, "field", None) or None


def param(default: Any = MISSING, *, help: str, factory: Any = MISSING, choices: typing.Iterable[Any] | None = None,
          min: float | None = None, max: float | None = None, flag: str | None = None, label: str | None = None,
          derived: bool = False, stored: bool = True) -> Any:
    """A dataclass field with its description.

    ``choices``: the values it may take (each item of a list field); ``min``/``max``: bounds of a number;
    ``flag``/``label``: the CLI option and form label when ``--field-name`` and "Field name" will not do;
    ``derived``: set at launch from the others (a resolved model id): stored, never given by a user;
    ``stored``: False for what only the launch checks use (the allowed roots) and the job need not keep.
    A field without ``param`` (a plain default) is described with an empty help.
    """
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min, "max": max,
                "flag": flag, "label": label, "derived": derived, "stored": stored}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


@dataclass(frozen=True)
class FieldInfo:
    """One field as the front ends see it."""

    name: str  # dotted within the outermost spec: "config.segment"
    type: Any
    default: Any  # MISSING when required
    help: str
    choices: tuple | None
    min: float | None
    max: float | None
    flag: str
    label: str
    derived: bool
    stored: bool

    @property
    def required(self) -> bool:
        return self.default is MISSING


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def info(cls: type, name: str) -> FieldInfo:
    """The description of the field ``name`` of ``cls``; dotted names reach into nested dataclasses."""
    head, _, rest = name.partition(".")
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    if head not in by_name:
        raise KeyError(f"{cls.__name__} has no field {head!r}; fields: {', '.join(by_name)}")
    f = by_name[head]
    tp = _hints(cls)[head]
    if rest:
        inner = info(_dataclass_in(tp), rest)
        return dataclasses.replace(inner, name=f"{head}.{inner.name}")
    meta = f.metadata
    if f.default is not MISSING:
        default = f.default
    elif f.default_factory is not MISSING:
        default = f.default_factory()
    else:
        default = MISSING
    return FieldInfo(name=head, type=tp, default=default, help=meta.get("help", ""), choices=meta.get("choices"),
                     min=meta.get("min"), max=meta.get("max"), flag=meta.get("flag") or "--" + head.replace("_", "-"),
                     label=meta.get("label") or head.replace("_", " ").capitalize(), derived=bool(meta.get("derived")),
                     stored=meta.get("stored", True))


def described(cls: type) -> list[FieldInfo]:
    """Every field of ``cls`` a user may set, nested dataclasses flattened ("config.segment")."""
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("derived") or not f.metadata.get("stored", True):
            continue
        inner = _dataclass_in(_hints(cls)[f.name], strict=False)
        if inner is not None and not hasattr(inner, "from_dict") and any("help" in g.metadata for g in dataclasses.fields(inner)):
            out.extend(dataclasses.replace(i, name=f"{f.name}.{i.name}") for i in described(inner))
        else:
            out.append(info(cls, f.name))
    return out


def _args(tp: Any) -> tuple[Any, tuple]:
    origin = typing.get_origin(tp)
    return origin, typing.get_args(tp)


def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    origin, args = _args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        allows_none = len(rest) < len(args)
        if len(rest) == 1:
            return rest[0], allows_none
        return Union[tuple(rest)], allows_none  # type: ignore[return-value]
    return tp, False


def _dataclass_in(tp: Any, *, strict: bool = True) -> type | None:
    inner, _ = _optional(tp)
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        return inner
    if strict:
        raise KeyError(f"{tp} is not a dataclass")
    return None


def base_type(tp: Any) -> Any:
    """int for ``int | None``; list for ``list[str] | tuple[str, ...] | None`` (what a widget or an option is)."""
    inner, _ = _optional(tp)
    origin, args = _args(inner)
    if origin in (Union, types.UnionType):
        origins = {typing.get_origin(a) or a for a in args}
        return list if origins & {list, tuple} else inner
    return origin or inner


def item_type(tp: Any) -> Any:
    """str for ``list[str] | None``; None for a type that is not a sequence."""
    inner, _ = _optional(tp)
    origin, args = _args(inner)
    if origin in (Union, types.UnionType):
        for a in args:
            if typing.get_origin(a) in (list, tuple):
                return typing.get_args(a)[0]
        return None
    if origin in (list, tuple) and args:
        return args[0]
    return None


# ---- checks ------------------------------------------------------------------------------------------
def check(obj: Any, prefix: str = "") -> None:
    """Each field of ``obj`` (and of the dataclasses it nests) within its choices and bounds; raises
    :class:`FieldError` naming the first that is not."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if value is None:
            continue
        choices = f.metadata.get("choices")
        if choices:
            values = value if isinstance(value, (list, tuple)) else [value]
            wrong = [v for v in values if v not in choices]
            if wrong:
                raise FieldError(name, f"{', '.join(map(repr, wrong))} is not one of {', '.join(map(str, choices))}")
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if (low is not None or high is not None) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if low is not None and value < low:
                raise FieldError(name, f"must be at least {low:g}, not {value:g}")
            if high is not None and value > high:
                raise FieldError(name, f"must be at most {high:g}, not {value:g}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check(value, f"{name}.")


# ---- plain values (JSON, YAML) ----------------------------------------------------------------------
def to_plain(value: Any) -> Any:
    """A dataclass (recursively) as JSON-ready values; fields with ``stored=False`` are left out. A
    dataclass that has its own ``to_dict`` (ColumnMapping, TrainConfig) writes itself."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        # a field set by the class itself (init=False: a backend's name) is not the user's to store
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init and f.metadata.get("stored", True)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def build(cls: type, data: dict[str, Any] | None, *, strict: bool = True, prefix: str = "") -> Any:
    """An instance of the dataclass ``cls`` from plain values (a recipe's YAML, a stored job's JSON),
    each value converted to its field's type. ``strict``: a key that is no field is refused (a user's
    typo); a stored job read back is not strict, so a job stored by an older version still runs.
    Raises :class:`FieldError` naming the field."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise FieldError(prefix.rstrip("."), f"expected a mapping of fields, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown and strict:
        raise FieldError(f"{prefix}{unknown[0]}", f"no such field of {cls.__name__}; fields: {', '.join(known)}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise FieldError(f"{prefix}{name}", "required")
            continue
        kwargs[name] = from_plain(hints[name], data[name], f"{prefix}{name}", strict=strict)
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise exc.within(prefix.rstrip(".")) if prefix else exc
    except (TypeError, ValueError) as exc:  # a nested config's own __post_init__ check
        raise FieldError(prefix.rstrip("."), str(exc)) from None


def from_plain(tp: Any, value: Any, name: str = "", *, strict: bool = True) -> Any:
    """``value`` (JSON/YAML) as the type ``tp``; :class:`FieldError` naming ``name`` when it cannot be."""
    inner, allows_none = _optional(tp)
    if value is None:
        if allows_none or inner is Any:
            return None
        raise FieldError(name, "may not be empty")
    if inner is Any:
        return value
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        if isinstance(value, inner):
            return value
        if not isinstance(value, dict):
            raise FieldError(name, f"expected a mapping of {inner.__name__}'s fields, got {value!r}")
        if hasattr(inner, "from_dict"):
            try:
                return inner.from_dict(value)
            except FieldError as exc:
                raise exc.within(name) from None
            except (TypeError, ValueError, KeyError) as exc:
                raise FieldError(name, str(exc)) from None
        return build(inner, value, strict=strict, prefix=f"{name}.")
    origin, args = _args(inner)
    if origin in (Union, types.UnionType):  # list[str] | tuple[str, ...]: a list
        if isinstance(value, (list, tuple)):
            seq = next((a for a in args if typing.get_origin(a) in (list, tuple)), None)
            if seq is not None:
                return from_plain(seq, value, name, strict=strict)
        for a in args:
            try:
                return from_plain(a, value, name, strict=strict)
            except FieldError:
                continue
        raise FieldError(name, f"{value!r} is not a {inner}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [value]  # one value where a list is expected: a list of one
        if not isinstance(value, (list, tuple)):
            raise FieldError(name, f"expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [from_plain(item, v, f"{name}[{i}]", strict=strict) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(name, f"expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): from_plain(vt, v, f"{name}.{k}", strict=strict) for k, v in value.items()}
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise FieldError(name, f"expected true or false, got {value!r}")
    if inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise FieldError(name, f"expected a whole number, got {value!r}")
    if inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise FieldError(name, f"expected a number, got {value!r}")
    if inner is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise FieldError(name, f"expected text, got {value!r}")
    if inner is Path:
        return Path(str(value))
    return value
