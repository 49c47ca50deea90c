"""Named filter configurations in the app tables (small rows that many users write: they belong with users and jobs, not in the lake)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .models import SavedFilter
from .named_rows import get_named, list_named


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
    return get_named(engine, SavedFilter, name, SavedFilter.name,
                     lambda known: UnknownFilter(f"no saved filter {name!r} (filters: {known}); save one with `vitpro filter save`"))


def list_all(engine: Engine) -> list[SavedFilter]:
    return list_named(engine, SavedFilter, SavedFilter.name)


def delete(engine: Engine, name: str) -> None:
    with Session(engine) as s, s.begin():
        row = s.scalar(select(SavedFilter).where(SavedFilter.name == name))
        if row is None:
            raise UnknownFilter(f"no saved filter {name!r}")
        s.delete(row)
