"""Job kinds by name. Each kind's spec is a frozen dataclass of its parameters, in the module of the
kind's name (jobs/ocr.py) and registered with ``@register("ocr")``. The spec is the one description of a
job that every front end reads: its fields (made with ``config.fields.param``) carry type, default,
choices, bounds and help, from which the CLI's options, the Jobs page's widgets and a recipe's stage are
built. ``resolve()`` checks a spec and returns it with its values settled (a model folder made absolute,
a format detected, a model id derived); the job stores that resolved spec as plain values
(``params()``), and the worker's handler reads it back as the spec (``ctx.spec``), not as a dict.

The workers register a handler for the same kinds (workers/jobs); a test checks the two registries name
the same kinds.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar, TypeVar

from config.fields import FieldError, build, check, info, to_plain
from config.registry import Registry

S = TypeVar("S", bound="JobSpec")

# the package's modules that hold no kind: not imported to find the kinds (the sending path loads the
# store's libraries, a second or more that a page listing kinds need not pay)
NOT_KINDS = frozenset({"registry", "submit", "broker", "devices", "names", "locations"})
# every kind's spec, filled by its module's @job_kind on import (a new kind is a new module, no list to update)
SPECS: Registry[type[JobSpec]] = Registry("job kind", package=__package__, skip=NOT_KINDS, idempotent=True)


class JobSpec:
    """What every spec has besides its own fields (each spec is a frozen dataclass deriving from this)."""

    KIND: ClassVar[str]
    QUEUE: ClassVar[str] = "cpu"

    def resolve(self: S) -> S:
        """The spec checked and settled, as the job will store it; raises :class:`config.fields.FieldError`
        naming the field (or another ValueError from an engine's own check) with a message for the user.
        Kinds with more to check or settle override it and call ``check(self)`` first."""
        check(self)
        return self

    def check_store(self, settings) -> None:
        """What only the store can tell before the job is queued (the vectors a job reads, say): raise a ValueError
        whose message says what to run first. Called by jobs.submit.check_job on the resolved spec; nothing by default."""

    def params(self) -> dict[str, Any]:
        """The job's stored parameters: the resolved spec as plain values (JSON)."""
        return to_plain(self.resolve())

    @classmethod
    def from_params(cls: type[S], params: dict[str, Any]) -> S:
        """The spec a job stored, read back (what a handler gets as ``ctx.spec``). Lenient: a parameter
        this version does not know (a job stored by an older one) is ignored."""
        return build(cls, params, strict=False)

    @classmethod
    def from_fields(cls: type[S], values: dict[str, Any]) -> S:
        """A spec from a user's plain values (a recipe stage): an unknown or ill-typed field is refused by name."""
        return build(cls, values, strict=True)

    def queue(self) -> str:
        """The queue this (resolved) job runs on; kinds whose fields pick one override it."""
        return self.QUEUE

    @classmethod
    def queue_for(cls, params: dict[str, Any]) -> str:
        """The queue of a job with these stored parameters. Read without checks: the queue depends on a
        field or two (OCR's device, generation's backend), and a field left out counts as its default."""
        from dataclasses import MISSING

        job = object.__new__(cls)
        for f in fields(cls):
            default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
            object.__setattr__(job, f.name, params.get(f.name, default))
        return job.queue()

    @classmethod
    def choices_of(cls, name: str) -> tuple:
        found = info(cls, name).choices
        if found is None:
            raise KeyError(f"{cls.__name__}.{name} has no choices")
        return found

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def job_kind(kind: str):
    """Class decorator: ``@job_kind("ocr")`` above a spec's ``@dataclass(frozen=True)``."""

    def add(cls: type[JobSpec]) -> type[JobSpec]:
        cls.KIND = kind
        return SPECS.add(cls, kind)

    return add


def kinds() -> list[str]:
    return sorted(SPECS)


def spec_for(kind: str) -> type[JobSpec]:
    """The spec of ``kind``; only its own module is imported (the command line needs one kind's choices)."""
    return SPECS.load(kind)[kind]


def queue_of(kind: str, params: dict[str, Any]) -> str:
    """The queue a job runs on: the kind's own, or the one its parameters call for (a local model: gpu)."""
    return spec_for(kind).queue_for(params)


def choices(kind: str, field: str) -> tuple[str, ...]:
    return spec_for(kind).choices_of(field)


__all__ = ["FieldError", "JobSpec", "SPECS", "choices", "job_kind", "kinds", "queue_of", "spec_for"]
