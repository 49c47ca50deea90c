"""Named views of the web app: a page and its query string (the filters, cuts, page number it shows), saved
by one user for anyone to open (FiftyOne's saved views, Argilla's shared filters)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .models import SavedView
from .named_rows import delete_named, get_named, list_named

MAX_QUERY_CHARS = 8000  # what an address can carry anyway


class ViewError(ValueError):
    pass


def save(engine: Engine, name: str, page: str, query: dict[str, str], by: str) -> bool:
    """Create or replace the view ``name``; returns True when it replaced one."""
    name = (name or "").strip()
    if not name:
        raise ViewError("give the view a name")
    if page and not page.replace("_", "").replace("-", "").isalnum():  # "": the app's default page
        raise ViewError(f"not a page: {page!r}")
    query = {str(k): str(v) for k, v in query.items()}
    if sum(len(k) + len(v) for k, v in query.items()) > MAX_QUERY_CHARS:
        raise ViewError(f"this view's address is longer than {MAX_QUERY_CHARS} characters")
    now = datetime.now(timezone.utc)
    with Session(engine) as s, s.begin():
        row = s.scalar(select(SavedView).where(SavedView.name == name))
        if row is None:
            s.add(SavedView(name=name, page=page, query=query, created_by=by, created_at=now))
            return False
        row.page, row.query, row.created_by, row.created_at = page, query, by, now
        return True


def get(engine: Engine, name: str) -> SavedView:
    return get_named(engine, SavedView, name, SavedView.name, lambda known: ViewError(f"no saved view {name!r} (views: {known})"))


def list_all(engine: Engine) -> list[SavedView]:
    return list_named(engine, SavedView, SavedView.name)


def delete(engine: Engine, name: str) -> None:
    delete_named(engine, SavedView, name, lambda: ViewError(f"no saved view {name!r}"))
