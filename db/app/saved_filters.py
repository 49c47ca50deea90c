"""Named filter configurations in the app tables (small rows that many users write: they belong with users and jobs, not in the lake)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .models import FilterSave, SavedFilter
from .named_rows import delete_named, get_named, list_named


class UnknownFilter(LookupError):
    pass


def save(engine: Engine, name: str, config: dict[str, Any], created_by: str) -> bool:
    """Create or replace the filter ``name`` as ``created_by`` (who saves it now); returns True when it
    replaced one. The row keeps its creator and names who saved it last; every save is also kept in the
    filter's history (:func:`history`), so a replaced filter's earlier conditions are never lost."""
    now = datetime.now(timezone.utc)
    with Session(engine) as s, s.begin():
        s.add(FilterSave(name=name, config=config, saved_by=created_by, saved_at=now))
        row = s.scalar(select(SavedFilter).where(SavedFilter.name == name))
        if row is None:
            s.add(SavedFilter(name=name, config=config, created_by=created_by, created_at=now, updated_at=now, updated_by=created_by))
            return False
        row.config, row.updated_at, row.updated_by = config, now, created_by
        return True


def history(engine: Engine, name: str) -> list[FilterSave]:
    """Every save of the filter ``name``, oldest first (saves made before the history existed: none)."""
    with Session(engine) as s:
        rows = list(s.scalars(select(FilterSave).where(FilterSave.name == name).order_by(FilterSave.saved_at, FilterSave.id)))
        s.expunge_all()
        return rows


def get(engine: Engine, name: str) -> SavedFilter:
    return get_named(engine, SavedFilter, name, SavedFilter.name,
                     lambda known: UnknownFilter(f"no saved filter {name!r} (filters: {known}); save one with `vitpro filter save`"))


def list_all(engine: Engine) -> list[SavedFilter]:
    return list_named(engine, SavedFilter, SavedFilter.name)


def delete(engine: Engine, name: str) -> None:
    delete_named(engine, SavedFilter, name, lambda: UnknownFilter(f"no saved filter {name!r}"))


def newest(filters: list[SavedFilter]) -> str | None:
    """The name of the filter saved last: what every page starts from (they disagreed: first, last by name)."""
    return max(filters, key=lambda f: (f.updated_at, f.id)).name if filters else None
