"""Objects in an S3-compatible store (AWS S3, MinIO, Ceph, moto): the one place that talks to it in Python.

The lake's own Parquet files go through DuckDB's httpfs extension (db/lake/connection.py); everything else the
project keeps there (image blobs, sources, exports, training runs, models) goes through this module.

Credentials and the endpoint come only from the standard environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``), read by botocore itself: no URL, parameter or row of ours ever holds them. Every
failure becomes an :class:`ObjectStoreError` that names the object and what went wrong, never the secret.
boto3 is imported on first use, so the web app and the command line start without it.
"""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SCHEME = "s3://"


class ObjectStoreError(Exception):
    """The object store refused or could not be reached; the message names the object, never a secret.

    ``kind`` is one of unreachable, credentials, no_bucket, missing, too_large, other. A unit that meets one is
    retried with back-off (the store may come back, a bucket may be created) and then fails with it.
    Not an OSError nor a RuntimeError: the per-image handlers that record a bad image and go on must
    not take an unreachable store for a bad image."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def is_remote(location: str | Path | None) -> bool:
    return str(location or "").startswith(SCHEME)


@dataclass(frozen=True)
class ObjectURL:
    bucket: str
    key: str  # no leading slash; a prefix ends with '/'

    @classmethod
    def parse(cls, url: str) -> "ObjectURL":
        if not is_remote(url):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, key = url[len(SCHEME):].partition("/")
        if "@" in bucket or ":" in bucket:
            # s3://KEY:SECRET@bucket would put a secret where logs and job parameters keep it
            raise ValueError("credentials do not belong in an s3:// URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}: use s3://BUCKET/PREFIX")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    def child(self, rel: str) -> "ObjectURL":
        base = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return ObjectURL(self.bucket, base + rel.lstrip("/"))

    def as_prefix(self) -> "ObjectURL":
        return self if not self.key or self.key.endswith("/") else ObjectURL(self.bucket, self.key + "/")


def endpoint_url() -> str | None:
    """The S3 endpoint the variables name (MinIO, moto, ...); None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def endpoint() -> str:
    """Where requests go (for messages): the endpoint, or AWS itself."""
    return endpoint_url() or "AWS S3"


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def forget_clients() -> None:
    """In a forked child: the parent's client shares its connection pool with the parent; make new ones."""
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()  # the parent may have held it at the fork


def client():
    """A boto3 S3 client for the current environment (one per process and environment)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
             "AWS_REGION", "AWS_DEFAULT_REGION", "VITPRO_S3_CONNECT_TIMEOUT")
    key = tuple(os.environ.get(n) for n in names)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            timeout = float(os.environ.get("VITPRO_S3_CONNECT_TIMEOUT") or 5)
            # Path-style addressing: MinIO and most self-hosted stores need it, AWS accepts it. A few quick
            # retries inside botocore; the unit's own retries (with back-off) are the longer ones.
            config = Config(connect_timeout=timeout, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                            s3={"addressing_style": "path" if endpoint_url() else "auto"})
            session = boto3.session.Session(region_name=region())
            _clients[key] = session.client("s3", config=config)
        return _clients[key]


def _error(exc: BaseException, url: ObjectURL | str, doing: str) -> ObjectStoreError:
    """Turn a botocore exception into a message a user can act on. botocore's messages name the bucket,
    key, endpoint and error code, never the secret key; we still build our own."""
    from botocore import exceptions as bx

    where = str(url)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)):
        return ObjectStoreError("unreachable", f"cannot reach the object store at {endpoint()} to {doing} {where} ({exc.__class__.__name__})")
    if isinstance(exc, bx.NoCredentialsError):
        return ObjectStoreError("credentials", f"no object-store credentials to {doing} {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, bx.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        bucket = url.bucket if isinstance(url, ObjectURL) else where
        if code == "NoSuchBucket":
            return ObjectStoreError("no_bucket", f"bucket {bucket!r} does not exist at {endpoint()} (to {doing} {where}); create it first")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return ObjectStoreError("missing", f"object {where} is missing (deleted behind the store's back?); could not {doing} it")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "403", "Forbidden") or status == 403:
            return ObjectStoreError("credentials", f"the object store refused the credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                                                   f"to {doing} {where} ({code or status})")
        return ObjectStoreError("other", f"the object store answered {code or status} to {doing} {where}")
    if isinstance(exc, bx.BotoCoreError):
        return ObjectStoreError("other", f"object store error to {doing} {where}: {exc.__class__.__name__}")
    return ObjectStoreError("other", f"cannot {doing} {where}: {exc.__class__.__name__}: {exc}")


def _call(doing: str, url: ObjectURL, fn, *args, **kwargs):
    from botocore import exceptions as bx

    try:
        return fn(*args, **kwargs)
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise _error(exc, url, doing) from None


# ---- single objects ----------------------------------------------------------------------------------
def head(url: ObjectURL) -> dict | None:
    """{size, etag} of an object, or None when there is none (other failures raise)."""
    from botocore import exceptions as bx

    try:
        meta = client().head_object(Bucket=url.bucket, Key=url.key)
    except bx.ClientError as exc:
        err = _error(exc, url, "look up")
        if err.kind == "missing" and exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            # HEAD has no body, so a missing bucket also answers 404: ask the bucket to tell them apart
            check_bucket(url)
            return None
        raise err from None
    except bx.BotoCoreError as exc:
        raise _error(exc, url, "look up") from None
    return {"size": int(meta["ContentLength"]), "etag": str(meta.get("ETag", "")).strip('"')}


def check_bucket(url: ObjectURL) -> None:
    """Raise a clear error when the bucket is missing, the store unreachable or the credentials wrong."""
    from botocore import exceptions as bx

    try:
        client().head_bucket(Bucket=url.bucket)
    except bx.ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            raise ObjectStoreError("no_bucket", f"bucket {url.bucket!r} does not exist at {endpoint()} (for {url}); create it first") from None
        raise _error(exc, url, "open the bucket of") from None
    except bx.BotoCoreError as exc:
        raise _error(exc, url, "open the bucket of") from None


def put_bytes(url: ObjectURL, data: bytes) -> None:
    _call("write", url, client().put_object, Bucket=url.bucket, Key=url.key, Body=data)


def put_file(url: ObjectURL, path: Path) -> None:
    _call("upload to", url, client().upload_file, str(path), url.bucket, url.key)


def get_bytes(url: ObjectURL, *, max_bytes: int | None = None) -> bytes:
    """The object's bytes; one over ``max_bytes`` is refused from its declared length, before its body is
    read (kind ``too_large``). One request: no look-up first."""
    answer = _call("read", url, client().get_object, Bucket=url.bucket, Key=url.key)
    body = answer["Body"]
    try:
        size = int(answer.get("ContentLength") or 0)
        if max_bytes is not None and size > max_bytes:
            raise ObjectStoreError("too_large", f"{size:,} bytes, over the limit of {max_bytes:,}")
        return body.read()
    finally:
        body.close()


def download(url: ObjectURL, target: Path) -> Path:
    """The object into ``target``, through a temporary name and a rename: a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _call("download", url, client().download_file, url.bucket, url.key, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def delete(url: ObjectURL) -> None:
    _call("delete", url, client().delete_object, Bucket=url.bucket, Key=url.key)


# ---- prefixes ----------------------------------------------------------------------------------------
def listing(prefix: ObjectURL) -> Iterator[tuple[str, int]]:
    """(key relative to the prefix, size) of every object under it."""
    prefix = prefix.as_prefix()
    pages = client().get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key)
    from botocore import exceptions as bx

    try:
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix.key):], int(obj["Size"])
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise _error(exc, prefix, "list") from None


def delete_prefix(prefix: ObjectURL) -> int:
    keys = [prefix.as_prefix().key + rel for rel, _ in listing(prefix)]
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start:start + 1000]]
        _call("delete under", prefix, client().delete_objects, Bucket=prefix.bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(keys)


def upload_folder(folder: Path, prefix: ObjectURL, *, last: tuple[str, ...] = ()) -> int:
    """Every file under ``folder`` to ``prefix``; the names in ``last`` go after all the others, so a
    reader that waits for them (a manifest) never sees a half-uploaded folder. Returns the file count."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    tail = [p for p in files if p.relative_to(folder).as_posix() in last]
    for path in [p for p in files if p not in tail] + tail:
        put_file(prefix.child(path.relative_to(folder).as_posix()), path)
    return len(files)


def download_folder(prefix: ObjectURL, folder: Path) -> int:
    """Every object under ``prefix`` into ``folder`` (one already there with the same size is kept)."""
    n = 0
    for rel, size in listing(prefix):
        if not rel or rel.endswith("/"):
            continue
        target = folder / rel
        if not (target.is_file() and target.stat().st_size == size):
            download(prefix.child(rel), target)
        n += 1
    return n


def fetch_cached(url: str, cache_root: Path) -> tuple[Path, str]:
    """A local copy of an object (a source file, say) in ``cache_root``, downloaded again only when its
    ETag changed; returns (path, etag). The ETag is what units compare to be sure they read the planned file."""
    parsed = ObjectURL.parse(url)
    meta = head(parsed)
    if meta is None:
        raise ObjectStoreError("missing", f"object {url} not found")
    target = cache_root / parsed.bucket / parsed.key
    tag = target.with_name(target.name + ".etag")
    if not (target.is_file() and tag.is_file() and tag.read_text() == meta["etag"]):
        download(parsed, target)
        tag.write_text(meta["etag"])
    return target, meta["etag"]


def secret_values() -> tuple[str, ...]:
    """The secrets this process holds, to scrub from any message that might quote one."""
    return tuple(v for v in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")) if v and len(v) >= 4)
