"""Fetch, check and describe one image; every refusal is an :class:`ImageError` with a code and a reason.

An image reference is a path under the ingest's image root, a ``file://`` URL (same rule), or an
``http(s)://`` URL fetched with a byte limit and a total deadline. Private and loopback addresses are
refused unless allowed (a catalog row must not make a worker read the cloud metadata service). The bytes
are checked before they are decoded (pixel count from the header, so a decompression bomb is refused
without being expanded) and then fully decoded, which is what finds truncated and corrupt files.
"""
from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import socket
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urljoin, urlparse

from PIL import Image, UnidentifiedImageError

from db.storage import objects
from db.storage.blobs import as_blobs
from db.storage.locations import Location

FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000  # 10k x 10k; a 30000 x 30000 "bomb" is refused from its header
    fetch_timeout_s: float = 15.0  # whole download, not per read
    max_redirects: int = 3
    allow_private_urls: bool = False


class ImageError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def about(self, ref: str, *, row_number: int | None = None, row_id: str | None = None, scrub=lambda text: text) -> str:
        """The reason with the file it concerns and the source row it came from, as a person reads it:
        ``image 'photos/12.jpg' (row 3, id SKU-12): cannot decode the image: ...``. ``scrub`` (redaction)
        applies to the file name and the reason, not to the row's id (a key field, kept as the source has it)."""
        ref = ref.strip()
        reason = self.message
        if ref and reason.startswith(repr(ref)):  # "'x.jpg': no such file ..." names the file already
            reason = reason[len(repr(ref)):].lstrip(": ")
        where = ", ".join(x for x in (f"row {row_number}" if row_number is not None else "", f"id {row_id}" if row_id else "") if x)
        return f"image {scrub(_short(ref))!r}{f' ({where})' if where else ''}: {scrub(reason)}"


@dataclass
class ImageInfo:
    sha256: str
    width: int
    height: int
    format: str
    n_bytes: int
    data: bytes

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS.get(self.format, "bin")


# ---- locating -----------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _real_root(root: str) -> Path:
    return Path(os.path.realpath(root))


def resolve_local(ref: str, root: Path) -> Path:
    """The real path of ``ref`` (relative to ``root`` or absolute), refused if it leaves ``root``."""
    root_real = _real_root(str(root))
    candidate = Path(ref)
    if not candidate.is_absolute():
        candidate = root_real / candidate
    real = Path(os.path.realpath(candidate))  # follows symlinks: a link out of the root is refused too
    if os.path.commonpath([root_real, real]) != str(root_real):
        raise ImageError("path_outside_root", f"{ref!r} resolves outside the image root {root_real}")
    if not real.exists():
        raise ImageError("missing_file", f"{ref!r}: no such file under {root_real}")
    if not real.is_file():
        raise ImageError("not_a_file", f"{ref!r} is not a regular file")
    return real


def _check_address(host: str, address: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    # is_global leaves out private, loopback, link-local, reserved and shared (100.64/10, where some
    # clouds put their metadata service) ranges
    if not ip.is_global:
        raise ImageError(
            "url_not_allowed", f"{host} resolves to the non-public address {ip}; set allow_private_urls to fetch from it"
        )


def _check_host(host: str | None, allow_private: bool) -> None:
    if not host:
        raise ImageError("bad_url", "the URL has no host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ImageError("fetch_failed", f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        _check_address(host, info[4][0])


def _check_peer(response, host: str, allow_private: bool) -> None:
    """Check the address actually connected to: a name that resolved to a public address when it was
    checked may resolve to an internal one when the client connects (DNS rebinding)."""
    if allow_private:
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        raise ImageError("url_not_allowed", f"cannot tell which address {host} connected to")
    _check_address(host, peer[0])


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    import httpx

    deadline = time.monotonic() + limits.fetch_timeout_s
    current = url
    with httpx.Client(timeout=limits.fetch_timeout_s, follow_redirects=False) as client:
        for _ in range(limits.max_redirects + 1):
            parsed = urlparse(current)
            if parsed.scheme not in ("http", "https"):
                raise ImageError("unsupported_url_scheme", f"redirected to unsupported scheme {parsed.scheme!r}")
            _check_host(parsed.hostname, limits.allow_private_urls)
            try:
                with client.stream("GET", current) as response:
                    _check_peer(response, parsed.hostname, limits.allow_private_urls)  # before any byte is read
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise ImageError("fetch_failed", f"HTTP {response.status_code} without a Location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise ImageError("fetch_failed", f"HTTP {response.status_code} from {_short(url)}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                        raise ImageError("image_too_large", f"{_short(url)} is {int(declared):,} bytes, over the limit of {limits.max_bytes:,}")
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limits.max_bytes:
                            raise ImageError("image_too_large", f"{_short(url)} sent more than {limits.max_bytes:,} bytes")
                        if time.monotonic() > deadline:
                            raise ImageError("fetch_timeout", f"{_short(url)} took longer than {limits.fetch_timeout_s:g} s")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.TimeoutException as exc:
                raise ImageError("fetch_timeout", f"{_short(url)} timed out after {limits.fetch_timeout_s:g} s") from exc
            except httpx.HTTPError as exc:
                raise ImageError("fetch_failed", f"cannot fetch {_short(url)}: {exc.__class__.__name__}") from exc
    raise ImageError("fetch_failed", f"more than {limits.max_redirects} redirects from {_short(url)}")


def _short(url: str, n: int = 120) -> str:
    return url if len(url) <= n else url[: n - 1] + "…"


def read_reference(ref: str, root: Path | str, limits: ImageLimits) -> bytes:
    """The bytes an image reference points at. ``root`` is a folder or an ``s3://`` prefix; relative
    references are under it, and with an S3 root they are objects there."""
    ref = ref.strip()
    if not ref:
        raise ImageError("missing_file", "empty image reference")
    parsed = urlparse(ref)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return fetch_url(ref, limits)
    if scheme == "s3":
        return _read_object(ref, limits)
    if scheme == "" and not Location.of(root).is_local:  # relative to an s3:// prefix: an object there
        return _read_object(str(Location.of(root).join(ref)), limits)
    if scheme == "file":
        path = resolve_local(parsed.path, root)
    elif scheme == "":
        path = resolve_local(ref, root)
    else:
        raise ImageError("unsupported_url_scheme", f"{scheme!r} URLs are not supported (use a path, file://, http:// or https://)")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageError("image_too_large", f"{ref!r} is {size:,} bytes, over the limit of {limits.max_bytes:,}")
    return path.read_bytes()


def _read_object(url: str, limits: ImageLimits) -> bytes:
    """An image from the object store. A missing object is a bad reference (recorded, the batch goes
    on); an unreachable store or refused credentials raise, so the unit is retried."""
    if ".." in url.split("/"):
        raise ImageError("path_outside_root", f"{url!r} climbs out of its prefix")
    try:
        parsed = objects.ObjectURL.parse(url)
    except ValueError as exc:
        raise ImageError("bad_url", str(exc)) from None
    try:
        return objects.get_bytes(parsed, max_bytes=limits.max_bytes)
    except objects.ObjectStoreError as exc:
        if exc.kind == "missing":
            raise ImageError("missing_file", f"object {url} not found") from None
        if exc.kind == "too_large":
            raise ImageError("image_too_large", f"{url!r}: {exc}") from None
        raise


# ---- checking -----------------------------------------------------------------------------------------
def inspect_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Check and describe image bytes; the header is read before anything is decoded."""
    if not data:
        raise ImageError("empty_file", "the image file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or "UNKNOWN"
                width, height = im.size
                if fmt not in FORMAT_EXTENSIONS:
                    raise ImageError("unsupported_format", f"image format {fmt} is not supported")
                if width * height > limits.max_pixels:
                    raise ImageError(
                        "image_too_large",
                        f"{width}x{height} = {width * height / 1e6:.0f} Mpx is over the limit of {limits.max_pixels / 1e6:.0f} Mpx",
                    )
                if fmt == "JPEG":
                    # Decode at 1/8 scale: every byte is still read (truncation is still found), 10x faster.
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", "the file is not an image in a known format") from exc
    except OSError as exc:
        code = "truncated_image" if "truncated" in str(exc).lower() else "corrupt_image"
        raise ImageError(code, f"cannot decode the image: {exc}") from exc
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError("corrupt_image", f"cannot decode the image: {exc.__class__.__name__}: {exc}") from exc
    return ImageInfo(hashlib.sha256(data).hexdigest(), width, height, fmt, len(data), data)


def store_blob(blob_root, info: ImageInfo) -> str:
    """Write the bytes under their hash, once, into the blob store (db/storage/blobs.py: a folder or S3; a plain
    folder is taken as one); returns the blob's path relative to the store."""
    rel = f"{info.sha256[:2]}/{info.sha256}.{info.extension}"
    (blob_root if hasattr(blob_root, "put") else as_blobs(blob_root)).put(rel, info.data)  # a store, its writer, or a folder
    return rel
