"""Model ids as exports and manifests show them: a hub id as it is, a local folder as its name only, so
nothing written for others names a path of the machine that ran the job."""
from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import Any


def public_model_id(model_id: str) -> str:
    """A hub id as it is; a local folder (``/models/qwen``, ``local-dir:/models/qwen``) as its name only,
    keeping a ``#suffix`` (the score's prompt variant)."""
    if not isinstance(model_id, str):
        return model_id
    base, hash_, suffix = model_id.partition("#")
    path = base = base.removeprefix("local-dir:")  # open_clip's marker for a folder
    if os.path.isabs(path) or path.startswith(("./", "../", "~")) or re.match(r"^[A-Za-z]:[\\/]", path):
        base = PurePath(path.rstrip("/\\")).name or path
    return base + hash_ + suffix


def scrub_paths(value: Any) -> Any:
    """Every string in a manifest that is a local path becomes its last name (model folders in filters)."""
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str):
        return public_model_id(value)
    return value
