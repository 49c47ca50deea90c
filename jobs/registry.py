"""Job kinds by name. Each kind's spec is a frozen dataclass of its parameters, in the module of the
kind's name (jobs/ocr.py) and registered with ``@register("ocr")``: its queue (or the rule picking one
from the parameters), its choice lists, and ``params()``, which checks the parameters and gives the dict
a job stores. The workers register a handler for the same kinds (workers/jobs); a test checks the two
registries name the same kinds.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from typing import Any, ClassVar

SPECS: dict[str, type[JobSpec]] = {}
# the package's modules that hold no kind: not imported to find the kinds (the sending path loads the
# store's libraries, a second or more that a page listing kinds need not pay)
NOT_KINDS = frozenset({"registry", "submit", "broker", "devices", "names"})


class JobSpec:
    """What every spec has besides its own fields (each spec is a frozen dataclass deriving from this)."""

    KIND: ClassVar[str]
    QUEUE: ClassVar[str] = "cpu"
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}  # field -> the values it may take (forms and the CLI offer them)

    def params(self) -> dict[str, Any]:
        """The job's stored parameters; raises ValueError (or a subclass) with a message for the user."""
        raise NotImplementedError

    @classmethod
    def queue_for(cls, params: dict[str, Any]) -> str:
        """The queue a job with these stored parameters runs on; kinds whose parameters pick one override it."""
        return cls.QUEUE

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def register(kind: str):
    """Class decorator: ``@register("ocr")`` above a spec's ``@dataclass(frozen=True)``."""

    def add(cls: type[JobSpec]) -> type[JobSpec]:
        if kind in SPECS and SPECS[kind] is not cls:
            raise ValueError(f"job kind {kind!r} registered twice ({SPECS[kind].__name__}, {cls.__name__})")
        cls.KIND = kind
        SPECS[kind] = cls
        return cls

    return add


def _load() -> dict[str, type[JobSpec]]:
    """Every spec module of the package, imported once: a new kind is a new module, no list to update."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in NOT_KINDS:
            importlib.import_module(f"{__package__}.{info.name}")
    return SPECS


def kinds() -> list[str]:
    return sorted(_load())


def spec_for(kind: str) -> type[JobSpec]:
    if kind not in SPECS and kind not in NOT_KINDS:
        try:  # the kind's own module: the command line needs one kind's choices, not every module
            importlib.import_module(f"{__package__}.{kind}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{kind}":  # the module exists but lacks one of its imports
                raise
    specs = SPECS if kind in SPECS else _load()
    if kind not in specs:
        raise ValueError(f"unknown job kind {kind!r}; kinds: {', '.join(sorted(specs))}")
    return specs[kind]


def queue_of(kind: str, params: dict[str, Any]) -> str:
    """The queue a job runs on: the kind's own, or the one its parameters call for (a local model: gpu)."""
    return spec_for(kind).queue_for(params)


def choices(kind: str, field: str) -> tuple[str, ...]:
    return spec_for(kind).CHOICES[field]
