"""The content-addressed image store: one copy of each ingested image, named by its SHA-256.

Two kinds, one interface. :class:`LocalBlobs` is a folder (the embedded default, ``VITPRO_HOME/blobs``).
:class:`RemoteBlobs` is an ``s3://bucket/prefix`` (``VITPRO_BLOB_PATH``) with a local cache on each
machine: a worker or the web app that reads a blob downloads it once into ``VITPRO_HOME/cache/blobs`` and
reads the file from there; the cache is kept under a size cap (``VITPRO_BLOB_CACHE_MB``) by removing the
files read longest ago. Readers always get a local file path, so image code stays the same for both.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from . import objects
from .locations import Location

# A file read this recently is never evicted: its reader may not have opened it yet.
_RECENT_SECONDS = 120.0


class BlobMissing(FileNotFoundError):
    """A blob the lake names is not in the store."""


def _check_rel(rel: str) -> str:
    if not rel or rel.startswith("/") or ".." in Path(rel).parts:
        raise ValueError(f"not a blob path: {rel!r}")
    return rel


class LocalBlobs:
    remote = False

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobs({self.root})"

    def put(self, rel: str, data: bytes) -> None:
        """Write once; a name no other process uses, then a rename: a reader never sees half a file."""
        target = self.root / _check_rel(rel)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def local(self, rel: str, *, missing_ok: bool = False) -> Path:
        """The file's path (it may be missing: readers report that as a broken blob)."""
        return self.root / _check_rel(rel)

    @contextmanager
    def writer(self):
        """Writes as they come (a local write is as fast as queuing it)."""
        yield self


class RemoteBlobs:
    remote = True

    def __init__(self, url: str, cache: Path, cap_bytes: int):
        self.url = objects.ObjectURL.parse(url).as_prefix()
        self.cache = Path(cache)
        self.cap_bytes = int(cap_bytes)
        self._lock = threading.Lock()
        self._cached_bytes: int | None = None  # counted on the first eviction check, then kept up to date
        self._known: set[str] = set()  # blobs this process has written: not sent again

    def __repr__(self) -> str:
        return f"RemoteBlobs({self.url})"

    def put(self, rel: str, data: bytes) -> None:
        """Upload once (content-addressed: the same name always holds the same bytes). A PUT is atomic in S3:
        a reader sees the whole object or none."""
        # No look-up first: a PUT of the same name writes the same bytes, and one request is cheaper than two.
        if rel in self._known:
            return
        objects.put_bytes(self.url.child(_check_rel(rel)), data)
        with self._lock:
            self._known.add(rel)

    @contextmanager
    def writer(self, threads: int = 8, in_flight: int = 32):
        """Uploads in parallel: one request at a time would make a unit wait on each round trip. The block
        ends when every upload has ended; the first failure is raised then, before the unit writes rows
        that name those blobs. At most ``in_flight`` images wait in memory."""
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="blob-upload")
        slots = threading.BoundedSemaphore(in_flight)
        futures = []

        def upload(rel: str, data: bytes) -> None:
            try:
                self.put(rel, data)
            finally:
                slots.release()

        class _Writer:
            def put(_, rel: str, data: bytes) -> None:
                slots.acquire()
                futures.append(pool.submit(upload, rel, data))

        try:
            yield _Writer()
        finally:
            pool.shutdown(wait=True)
        for future in futures:
            future.result()  # raises the first failure

    def fetch_many(self, rels, folder: Path, threads: int = 8, progress=None) -> dict[str, Path]:
        """Blobs downloaded in parallel into ``folder`` (not the capped cache: an export of more images than
        the cap holds needs them all at once); {blob path: file}. A blob missing from the store is left
        out, for the caller to report with the others."""
        folder = Path(folder)

        def one(rel: str):
            try:
                return rel, objects.download(self.url.child(_check_rel(rel)), folder / rel)
            except objects.ObjectStoreError as exc:
                if exc.kind == "missing":
                    return rel, None
                raise

        out: dict[str, Path] = {}
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="blob-fetch") as pool:
            for k, (rel, path) in enumerate(pool.map(one, sorted(set(rels)))):
                if path is not None:
                    out[rel] = path
                if progress is not None:
                    progress(k + 1)
        return out

    def local(self, rel: str, *, missing_ok: bool = False) -> Path:
        """The blob as a local file: from the cache, or downloaded into it. A blob missing from the store
        raises :class:`BlobMissing` naming the object (an OSError, as a deleted local file gives); with
        ``missing_ok`` (pages that show images) it comes back as a path that does not exist."""
        target = self.cache / _check_rel(rel)
        if target.is_file():
            try:
                os.utime(target)  # mark it read now: eviction removes the files read longest ago
            except OSError:
                pass
            return target
        try:
            objects.download(self.url.child(rel), target)
        except objects.ObjectStoreError as exc:
            if exc.kind != "missing":
                raise
            if missing_ok:
                return target
            raise BlobMissing(f"blob {self.url.child(rel)} is missing from the store (deleted behind its back?)") from None
        self._grew(target.stat().st_size)
        return target

    # ---- the cache's size cap ------------------------------------------------------------------------
    def _grew(self, n: int) -> None:
        with self._lock:
            if self._cached_bytes is None:
                self._cached_bytes = cache_size(self.cache)
            else:
                self._cached_bytes += n
            if self._cached_bytes > self.cap_bytes:
                self._cached_bytes = evict(self.cache, int(self.cap_bytes * 0.8))


def cache_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def evict(folder: Path, keep_bytes: int) -> int:
    """Remove the files read longest ago until at most ``keep_bytes`` remain; returns what remains.
    Files read in the last two minutes stay even over the cap (a reader may be about to open them)."""
    files = []
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
        except OSError:
            continue  # another process evicted it first
    total = sum(size for _, size, _ in files)
    now = time.time()
    for mtime, size, path in sorted(files):
        if total <= keep_bytes or now - mtime < _RECENT_SECONDS:
            break
        path.unlink(missing_ok=True)
        total -= size
    return total


def as_blobs(store) -> LocalBlobs | RemoteBlobs:
    """A blob store from a store or a plain folder (callers and tests that hold only a path)."""
    if isinstance(store, (LocalBlobs, RemoteBlobs)):
        return store
    return LocalBlobs(Path(store))


_open: dict[tuple, LocalBlobs | RemoteBlobs] = {}


def forget_open_blobs() -> None:
    """In a forked child (a training loader's worker): the parent's S3 client and its connections are
    not ours to share; the next open_blobs makes this process its own."""
    _open.clear()
    objects.forget_clients()


def open_blobs(settings) -> LocalBlobs | RemoteBlobs:
    """The blob store the settings name (one per process, so the cache's size is counted once)."""
    key = (settings.blob_url, str(settings.blob_path), settings.blob_cache_bytes)
    if key not in _open:
        if Location.of(settings.blob_url).is_local:
            _open[key] = LocalBlobs(settings.blob_path)
        else:
            _open[key] = RemoteBlobs(settings.blob_url, settings.blob_path, settings.blob_cache_bytes)
    return _open[key]
