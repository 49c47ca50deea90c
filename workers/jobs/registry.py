"""Job handlers by kind: each module of the package adds its plan, run and finalize for the kind its spec
registered in jobs/ (a test checks the two registries name the same kinds)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from config.registry import Registry


@dataclass(frozen=True)
class Handler:
    kind: str
    plan: Callable[[Any], tuple[list, dict]]
    run: Callable[[Any], dict]
    finalize: Callable[[Any], dict]


# filled by each handler module's add_handler on import: a new kind is a new module, no list to update
HANDLERS: Registry[Handler] = Registry("job handler", package=__package__, skip={"registry"}, key=lambda h: h.kind, idempotent=True)


def add_handler(kind: str, *, plan: Callable, run: Callable, finalize: Callable) -> Handler:
    return HANDLERS.add(Handler(kind, plan, run, finalize))


def load_handlers() -> Registry[Handler]:
    """Every handler module of the package, imported once."""
    return HANDLERS.load()
