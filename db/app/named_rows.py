"""Rows of the app tables that users address by name (saved filters, pilots, snapshots)."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session


def get_named(engine: Engine, model: Any, name: str, order: Any, missing: Callable[[str], Exception]) -> Any:
    """The detached row of ``model`` called ``name``; otherwise raises ``missing(known names)``, the known
    names listed in ``order`` (so the message tells the user what there is)."""
    with Session(engine) as s:
        row = s.scalar(select(model).where(model.name == name))
        if row is None:
            raise missing(", ".join(s.scalars(select(model.name).order_by(order))) or "none yet")
        s.expunge(row)
        return row


def list_named(engine: Engine, model: Any, order: Any) -> list[Any]:
    with Session(engine) as s:
        rows = list(s.scalars(select(model).order_by(order)))
        s.expunge_all()
        return rows


def insert_named(engine: Engine, row: Any, exists: Callable[[], Exception]) -> Any:
    """Insert ``row`` unless a row of its kind has its name already (``exists()`` is raised then; the test
    and the insert share one transaction); returns the row, detached."""
    model = type(row)
    with Session(engine) as s, s.begin():
        if s.scalar(select(model.id).where(model.name == row.name)) is not None:
            raise exists()
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


def name_taken(engine: Engine, model: Any, name: str) -> bool:
    with Session(engine) as s:
        return s.scalar(select(model.id).where(model.name == name)) is not None


def delete_named(engine: Engine, model: Any, name: str, missing: Callable[[], Exception]) -> None:
    """Delete the row of ``model`` called ``name``; ``missing()`` is raised when there is none."""
    with Session(engine) as s, s.begin():
        row = s.scalar(select(model).where(model.name == name))
        if row is None:
            raise missing()
        s.delete(row)
