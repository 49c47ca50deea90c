"""An export folder as one zip for the browser (Snapshots page), with a size cap.

The zip is written to a temporary file, not grown in memory, and only when the user clicks (the page
passes :func:`zip_folder` to ``st.download_button`` as deferred data): a page showing five exports does
not read five folders on every rerun. Streamlit still holds the finished zip in memory while it serves
it, so a folder over the cap is refused with its path (copy it from the server instead).
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

DEFAULT_CAP_MB = 500
# already compressed: storing them again costs CPU for nothing
_STORED = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".parquet", ".zip", ".gz"}


def cap_bytes() -> int:
    """The largest folder offered as a zip (``VITPRO_ZIP_MAX_MB``, default 500 MB)."""
    try:
        mb = float(os.environ.get("VITPRO_ZIP_MAX_MB", DEFAULT_CAP_MB))
    except ValueError:
        mb = DEFAULT_CAP_MB
    return int(mb * 1024 * 1024)


def _files(folder: Path) -> list[Path]:
    # regular files only: a link could point outside the export
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def zip_folder(folder: Path, *, root_name: str | None = None) -> bytes:
    """The folder's files in a zip, under ``root_name/`` (the folder's name by default), paths relative
    to the folder so the records' relative image paths resolve once unpacked."""
    folder = Path(folder)
    root = root_name or folder.name
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path in _files(folder):
                method = zipfile.ZIP_STORED if path.suffix.lower() in _STORED else zipfile.ZIP_DEFLATED
                zf.write(path, f"{root}/{path.relative_to(folder).as_posix()}", compress_type=method)
        tmp.seek(0)
        return tmp.read()
