"""Job handlers by kind: each module of the package registers its plan, run and finalize against the
kind its spec registered in jobs/ (a test checks the two registries name the same kinds)."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Handler:
    kind: str
    plan: Callable[[Any], tuple[list, dict]]
    run: Callable[[Any], dict]
    finalize: Callable[[Any], dict]


HANDLERS: dict[str, Handler] = {}


def register(kind: str, *, plan: Callable, run: Callable, finalize: Callable) -> None:
    if kind in HANDLERS and HANDLERS[kind].plan is not plan:
        raise ValueError(f"two handlers for the job kind {kind!r}")
    HANDLERS[kind] = Handler(kind, plan, run, finalize)


def load_handlers() -> dict[str, Handler]:
    """Every handler module of the package, imported once: a new kind is a new module, no list to update."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")
    return HANDLERS
