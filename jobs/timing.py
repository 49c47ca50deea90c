"""How long a job has run and how long it may still take, as the Jobs page and `vitpro jobs list` say it.

The estimate is the plain rate so far: the work units done per second since the job started, applied to
the units left. It is shown only once some units are done (no rate before) and while the job runs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Timing:
    elapsed_s: float | None  # since it started (None: not started yet)
    eta_s: float | None  # until it ends at the rate so far (None: ended, or no rate yet)


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def timing(status: str, started_at: datetime | None, finished_at: datetime | None, done: int, total: int,
           now: datetime | None = None) -> Timing:
    now = _utc(now) or datetime.now(timezone.utc)
    started, finished = _utc(started_at), _utc(finished_at)
    if started is None:
        return Timing(None, None)
    elapsed = max(0.0, ((finished or now) - started).total_seconds())
    if status != "running" or finished is not None or done <= 0 or total <= done:
        return Timing(elapsed, None)
    return Timing(elapsed, elapsed / done * (total - done))


def duration(seconds: float | None) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
