"""Named filter configurations in the app tables (small, many-writer rows: DESIGN.md)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .app_models import SavedFilter


class UnknownFilter(LookupError):
    pass


def save(engine: Engine, name: str, config: dict[str, Any], created_by: str) -> bool:
    """Create or replace the filter ``name``; returns True when it replaced one."""
    now = datetime.now(timezone.utc)
    with Session(engine) as s, s.begin():
        row = s.scalar(select(SavedFilter).where(SavedFilter.name == name))
        if row is None:
            s.add(SavedFilter(name=name, config=config, created_by=created_by, created_at=now, updated_at=now))
            return False
        row.config, row.updated_at = config, now
        return True


def get(engine: Engine, name: str) -> SavedFilter:
    with Session(engine) as s:
        row = s.scalar(select(SavedFilter).where(SavedFilter.name == name))
        if row is None:
            known = ", ".join(s.scalars(select(SavedFilter.name).order_by(SavedFilter.name))) or "none yet"
            raise UnknownFilter(f"no saved filter {name!r} (filters: {known}); save one with `vitpro filter save`")
        s.expunge(row)
        return row


def list_all(engine: Engine) -> list[SavedFilter]:
    with Session(engine) as s:
        rows = list(s.scalars(select(SavedFilter).order_by(SavedFilter.name)))
        s.expunge_all()
        return rows


def delete(engine: Engine, name: str) -> None:
    with Session(engine) as s, s.begin():
        row = s.scalar(select(SavedFilter).where(SavedFilter.name == name))
        if row is None:
            raise UnknownFilter(f"no saved filter {name!r}")
        s.delete(row)
