"""Where files are: a path on this machine, or an ``s3://`` URL of the object store, behind one interface,
so that code which reads, lists, copies or writes files does not ask which of the two it has.

    out = Location.of(job.out)                       # "/data/runs/a" or "s3://bucket/runs/a"
    out.join("adapter", "training_config.json").read_text()
    out.holds_files()                                # a folder with files in it, a prefix with objects under it
    folder = out.local_path(cache)                   # a local folder as it is; a prefix copied into the cache
    work = out.workspace(scratch)                    # write into work.path, then work.push(...)

A :class:`Workspace` is how a folder is written somewhere: a local location is written in place (pushing
is nothing); an ``s3://`` one is written in a scratch folder of this machine and uploaded when finished,
some files last (the commit mark a reader waits for: an export's manifest, a checkpoint's state).

No credential is ever part of a location: an ``s3://`` URL with a user or password in it is refused
(:meth:`db.storage.objects.ObjectURL.parse`); the store's credentials come from the standard variables only.
"""
from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import objects

COMPLETE = ".vitpro-complete"  # beside a prefix's local copy, written once every file of it is there


class Location(ABC):
    """A file or folder on this machine (:class:`LocalLocation`) or an object or prefix in the object store
    (:class:`S3Location`). Made with :meth:`of`; equal when they name the same place, spelled the same."""

    is_local: bool

    @staticmethod
    def of(ref: str | Path | Location) -> Location:
        """The location a job parameter, a setting or a path names: an ``s3://`` URL (refused with a
        credential in it, or without a bucket), otherwise a local path, kept as it is spelled."""
        if isinstance(ref, Location):
            return ref
        if objects.is_remote(ref):
            return S3Location(objects.ObjectURL.parse(str(ref)))
        return LocalLocation(str(ref))

    @abstractmethod
    def __str__(self) -> str: ...

    @abstractmethod
    def join(self, *parts: str) -> Location:
        """A child, spelled as each kind spells it (``parts`` may hold '/')."""

    @abstractmethod
    def absolute(self) -> Location:
        """The same place in the form a job carries to other machines: a local path made absolute (``~``
        expanded, links resolved), an ``s3://`` URL as it is."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The last part of the path or key."""

    @property
    @abstractmethod
    def parent(self) -> Location: ...

    @abstractmethod
    def exists(self) -> bool:
        """A file or a folder is here (in S3: an object at this key, or objects under it as a prefix)."""

    @abstractmethod
    def is_file(self) -> bool:
        """A file is here (in S3: an object at this key, one request)."""

    @abstractmethod
    def holds_files(self) -> bool:
        """A folder with anything in it, or a prefix with an object under it."""

    @abstractmethod
    def read_bytes(self, *, max_bytes: int | None = None) -> bytes:
        """The file's bytes. A missing one raises FileNotFoundError here, ObjectStoreError (kind
        ``missing``) in S3; ``max_bytes`` is only checked in S3, before the body is read."""

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    @abstractmethod
    def stamp(self) -> str | None:
        """What changes when the file is written again (its mtime here, its ETag in S3); None when there is
        no file. For caches that must not serve an old copy."""

    @abstractmethod
    def files(self) -> Iterator[tuple[str, int]]:
        """(path relative to this location, size) of every file under it."""

    def size(self) -> int:
        """Bytes of every file under it."""
        return sum(n for _, n in self.files())

    @abstractmethod
    def remove(self) -> None:
        """The folder (or prefix) with everything under it, or the file (or object); nothing when there is none."""

    @abstractmethod
    def local_path(self, cache_root: Path, *, what: str = "files") -> Path:
        """A folder on this machine holding what is here: a local path as it is; a prefix copied once into
        ``cache_root/<bucket>/<key>`` and taken from there afterwards (what is under a prefix is taken as
        fixed: a new version goes under a new prefix, or a cache root of its own). An empty prefix is an
        ObjectStoreError (kind ``missing``) that names ``what`` was looked for."""

    @abstractmethod
    def check_reachable(self) -> None:
        """Raise a clear error now when the location cannot be used (S3: no such bucket, the store
        unreachable, credentials refused); a later write deep in a job would say it less clearly."""

    @abstractmethod
    def workspace(self, scratch: Path) -> Workspace:
        """Where this machine writes what goes here: the local folder itself, or ``scratch`` for an
        ``s3://`` location (see :class:`Workspace`)."""


@dataclass(frozen=True)
class LocalLocation(Location):
    text: str  # the path as it was given (a job's local model is named as its sender spelled it)

    is_local = True

    def __str__(self) -> str:
        return self.text

    @property
    def path(self) -> Path:
        return Path(self.text)

    def join(self, *parts: str) -> LocalLocation:
        return LocalLocation(str(self.path.joinpath(*parts)))

    def absolute(self) -> LocalLocation:
        return LocalLocation(str(self.path.expanduser().resolve()))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def parent(self) -> LocalLocation:
        return LocalLocation(str(self.path.parent))

    def exists(self) -> bool:
        return self.path.exists()

    def is_file(self) -> bool:
        return self.path.is_file()

    def holds_files(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def read_bytes(self, *, max_bytes: int | None = None) -> bytes:
        return self.path.read_bytes()

    def stamp(self) -> str | None:
        try:
            return str(self.path.stat().st_mtime_ns) if self.path.is_file() else None
        except OSError:
            return None

    def files(self) -> Iterator[tuple[str, int]]:
        if self.path.is_file():
            yield "", self.path.stat().st_size
            return
        for root, _, names in os.walk(self.path):
            for name in sorted(names):
                path = Path(root) / name
                if path.is_file() and not path.is_symlink():
                    yield path.relative_to(self.path).as_posix(), path.stat().st_size

    def remove(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)

    def local_path(self, cache_root: Path, *, what: str = "files") -> Path:
        return self.path

    def check_reachable(self) -> None:
        return None  # a folder is made where it is first written

    def workspace(self, scratch: Path) -> Workspace:
        return Workspace(self, self.path)


@dataclass(frozen=True)
class S3Location(Location):
    url: objects.ObjectURL

    is_local = False

    def __str__(self) -> str:
        return str(self.url).rstrip("/")  # the spelling jobs and the lake record: no trailing '/'

    def join(self, *parts: str) -> S3Location:
        url = self.url
        for part in parts:
            url = url.child(part)
        return S3Location(url)

    def absolute(self) -> S3Location:
        return S3Location(objects.ObjectURL.parse(str(self)))

    @property
    def name(self) -> str:
        return self.url.key.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Location:
        key = self.url.key.rstrip("/")
        return S3Location(objects.ObjectURL(self.url.bucket, key.rsplit("/", 1)[0] + "/" if "/" in key else ""))

    def exists(self) -> bool:
        return self.is_file() or self.holds_files()

    def is_file(self) -> bool:
        return objects.head(self.url) is not None

    def holds_files(self) -> bool:
        return next(iter(objects.listing(self.url)), None) is not None

    def read_bytes(self, *, max_bytes: int | None = None) -> bytes:
        return objects.get_bytes(self.url, max_bytes=max_bytes)

    def stamp(self) -> str | None:
        meta = objects.head(self.url)
        return None if meta is None else meta["etag"]

    def files(self) -> Iterator[tuple[str, int]]:
        return objects.listing(self.url)

    def remove(self) -> None:
        if objects.delete_prefix(self.url) == 0 and self.url.key and not self.url.key.endswith("/"):
            objects.delete(self.url)  # nothing under it as a prefix: the object of that name, if any

    def local_path(self, cache_root: Path, *, what: str = "files") -> Path:
        target = Path(cache_root) / self.url.bucket / self.url.key.rstrip("/")
        done = target.with_name(target.name + COMPLETE)
        if done.is_file():
            return target
        n = objects.download_folder(self.url, target)
        if n == 0:
            raise objects.ObjectStoreError("missing", f"no {what} under {self.url.as_prefix()}: nothing is stored there")
        done.write_text(str(n))  # last: a copy cut short is fetched again, never used
        return target

    def check_reachable(self) -> None:
        objects.check_bucket(self.url)

    def workspace(self, scratch: Path) -> Workspace:
        return StagedWorkspace(self, Path(scratch))

    # what a staged workspace does with the store
    def _download(self, target: Path) -> None:
        objects.download_folder(self.url, target)

    def _upload(self, source: Path, *, last: tuple[str, ...], replace: bool) -> None:
        if source.is_file():
            objects.put_file(self.url, source)
            return
        prefix = self.url.as_prefix()
        if replace:
            # the commit marks first, so no reader takes what is left during the replacement for whole
            for name in last:
                objects.delete(prefix.child(name))
            objects.delete_prefix(prefix)
        objects.upload_folder(source, prefix, last=last)


@dataclass(frozen=True)
class Workspace:
    """A folder on this machine for what goes to ``location``: for a local location the folder itself,
    written in place, so :meth:`pull` and :meth:`push` have nothing to do."""

    location: Location
    path: Path

    staged = False  # True: ``path`` is a scratch copy that push() uploads

    def pull(self, rel: str = "") -> None:
        """What the location holds under ``rel``, into the same place in the workspace, replacing what the
        workspace had there (only what reached the location counts)."""

    def push(self, rel: str = "", *, last: tuple[str, ...] = (), replace: bool = False) -> Location:
        """A finished file or folder of the workspace (``rel``; '' for the whole) to its place at the
        location, the names in ``last`` after every other file; ``replace``: what was there goes first.
        Returns where it is now."""
        return self.location.join(rel) if rel else self.location


@dataclass(frozen=True)
class StagedWorkspace(Workspace):
    """A scratch folder for an ``s3://`` location: S3 has no rename of a folder, so what a reader waits
    for is uploaded last (and, when replacing, deleted first)."""

    location: S3Location
    staged = True

    def pull(self, rel: str = "") -> None:
        target = self.path / rel if rel else self.path
        shutil.rmtree(target, ignore_errors=True)
        (self.location.join(rel) if rel else self.location)._download(target)

    def push(self, rel: str = "", *, last: tuple[str, ...] = (), replace: bool = False) -> Location:
        target = self.location.join(rel) if rel else self.location
        target._upload(self.path / rel if rel else self.path, last=last, replace=replace)
        return target


def check_fresh(out: str, what: str) -> str:
    """The output location (absolute), refused when it already holds files: an earlier job's results would
    be overwritten (or mixed with these)."""
    where = Location.of(out).absolute()
    if where.holds_files():
        remedy = "remove the folder" if where.is_local else "remove them"
        raise ValueError(f"{where} already holds an earlier {what}'s files; pick another name (or {remedy})")
    return str(where)
