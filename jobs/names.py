"""Names that become folder names (a training run's, an evaluation's): checked before a job exists."""
from __future__ import annotations

from pathlib import Path


def check_folder_name(name: str, what: str) -> None:
    """Letters, digits, '-', '_' and '.', with at least one letter or digit: never a path, never '..'."""
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{what} is letters, digits, '-', '_' and '.', not {name!r}")


def check_fresh_folder(out: str, what: str) -> Path:
    """The resolved folder, refused when it already holds files: an earlier job's results would be
    overwritten (or mixed with these)."""
    folder = Path(out).expanduser().resolve()
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} already holds an earlier {what}'s files; pick another --name (or remove the folder)")
    return folder
