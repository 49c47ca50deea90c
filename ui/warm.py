"""Cache warming: after a commit, the pages' costly reads are built again in the background, before anyone
opens a page, so that the first view after a job ends costs what a rerun costs.

The pages' costly reads (an aggregate over every sample, the filter engine's stats table, the browse index,
the sorted score arrays; seconds each at a million samples) are cached per version of the tables they read
(ui/context.py, ui/stats_cache.py, ui/browse_cache.py). A commit to one of those tables makes their entries
stale, and without this module the first user to open a page after a job ends would wait for all of them.

Each of those reads notes here what it was asked for (its kind and arguments). One thread per server
process looks at the store's version every few seconds (``VITPRO_UI_WARM_SECONDS``; 0 turns it off); when
it moves, the thread asks again for every read noted in the last hour, at the new version: the cached
function then builds the entry (or finds it already built) and keeps it in this process's memory (and, for
the reads kept on disk, under ``VITPRO_HOME/cache/reads``). A page opened meanwhile waits for the same build
rather than starting a second one (Streamlit computes one value per key at a time).

Why a thread in the web server rather than a Celery task after each job: what makes the first view slow is
building the entry in the memory of the process that serves the page. A worker could only write the copies
kept on disk, and only where it shares that disk with the web server (not in the PostgreSQL + Redis + S3
set-up, where no disk is shared); loading them would still be left to the first user.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from streamlit.logger import get_logger

log = get_logger(__name__)  # Streamlit's handler: the passes show in the server's own log

KEPT = 64  # the reads remembered (the most recently asked for); older ones are not warmed
FRESH_FOR = 3600.0  # seconds: a read nobody asked for in the last hour is left to its next asker

_lock = threading.Lock()
_noted: OrderedDict[tuple, float] = OrderedDict()  # (kind, *args) -> when it was last asked for
_warmers: dict[str, Callable[..., Any]] = {}  # kind -> the function that reads it at the store's current version
_local = threading.local()  # .warming: this thread is the warmer (its own reads are not noted)


def register(kind: str, fn: Callable[..., Any]) -> None:
    """``fn(*args)`` reads ``kind`` at the store's current version, through its cache."""
    _warmers[kind] = fn


def note(kind: str, *args: Any) -> None:
    """A page asked for ``kind`` with ``args``: warm it after the next commit too."""
    if getattr(_local, "warming", False):
        return
    with _lock:
        _noted[(kind, *args)] = time.monotonic()
        _noted.move_to_end((kind, *args))
        while len(_noted) > KEPT:
            _noted.popitem(last=False)


def noted() -> list[tuple]:
    """The reads to warm, oldest first (those asked for within FRESH_FOR)."""
    now = time.monotonic()
    with _lock:
        return [key for key, at in _noted.items() if now - at <= FRESH_FOR]


def forget() -> None:
    with _lock:
        _noted.clear()


@dataclass
class Pass:
    """One warming pass: the store version it warmed for, how long it took, what it read and what failed."""
    version: int
    seconds: float = 0.0
    warmed: int = 0
    failed: list[str] = field(default_factory=list)


def warm_now(version: int) -> Pass:
    """Read every noted read again (through its cache, so a fresh entry is a lookup); a read that fails is
    logged and left to its next asker, and the others go on."""
    done = Pass(version)
    t = time.perf_counter()
    _local.warming = True
    try:
        for kind, *args in noted():
            fn = _warmers.get(kind)
            if fn is None:
                continue
            try:
                fn(*args)
                done.warmed += 1
            except Exception as exc:  # a table gone, a model no longer stored: the page will say so itself
                done.failed.append(f"{kind}{tuple(args)!r:.120}: {type(exc).__name__}: {exc}")
                log.warning("cache warming: %s failed: %s", kind, exc)
    finally:
        _local.warming = False
    done.seconds = time.perf_counter() - t
    return done


class Warmer:
    """The background thread: ``version()`` read every ``interval`` seconds, a pass when it changes."""

    def __init__(self, version: Callable[[], int], interval: float) -> None:
        self.version, self.interval = version, interval
        self.last: Pass | None = None  # the latest pass (for the bench, the tests and the log)
        self.passes = 0
        self._stop = threading.Event()
        self._seen: int | None = None
        self.thread = threading.Thread(target=self._run, name="vitpro-cache-warmer", daemon=True)

    def start(self) -> Warmer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def step(self) -> Pass | None:
        """One look at the store: a pass if its version moved since the last look (not at the first look:
        then the pages build what they need themselves)."""
        current = self.version()
        if self._seen is None or current == self._seen:
            self._seen = current
            return None
        self._seen = current
        self.last = warm_now(current)
        self.passes += 1
        log.info("cache warming for store version %s: %d read(s) in %.2f s%s", current, self.last.warmed, self.last.seconds,
                 f", {len(self.last.failed)} failed" if self.last.failed else "")
        return self.last

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception as exc:  # the store unreachable for a moment: look again next time
                log.warning("cache warming: cannot read the store's version: %s", exc)


_started: Warmer | None = None
_start_lock = threading.Lock()
_serving = False


def serving() -> None:
    """Called by ui/server.py: this process is a web server. Without it :func:`start` starts nothing: a
    process that runs pages under AppTest (the tests, the bench) has Streamlit's runtime too, but its stores
    come and go, and a thread there would warm one store's reads against the next."""
    global _serving
    _serving = True


def start(version: Callable[[], int], interval: float) -> Warmer | None:
    """The server process's warmer, started once (later calls return it); None when ``interval`` is 0 or
    this process is not a web server (see :func:`serving`)."""
    global _started
    if interval <= 0 or not _serving:
        return None
    with _start_lock:
        if _started is None or not _started.thread.is_alive():
            _started = Warmer(version, interval).start()
        return _started
