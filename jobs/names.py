"""Names that become folder names (a training run's, an evaluation's): checked before a job exists."""
from __future__ import annotations


def check_folder_name(name: str, what: str) -> None:
    """Letters, digits, '-', '_' and '.', with at least one letter or digit: never a path, never '..'."""
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{what} is letters, digits, '-', '_' and '.', not {name!r}")
