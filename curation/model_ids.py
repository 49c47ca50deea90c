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


# an absolute path inside a text ("vis_attn >= p25 (model=/srv/models/idefics2#ocr)"): a "/" that starts a
# word, so "Qwen/Qwen2.5-VL" (a hub id) is left alone
_EMBEDDED_PATH = re.compile(r"(?<![\w.\-/])(?:local-dir:)?(/[^\s,()'\"]+)")


def scrub_text(text: str) -> str:
    """A string with every local path in it cut to its last name (and any ``#suffix`` kept)."""
    text = public_model_id(text)
    return _EMBEDDED_PATH.sub(lambda m: public_model_id(m.group(1)), text)


def scrub_paths(value: Any) -> Any:
    """Every local path in a manifest (values, keys, paths inside texts) becomes its last name."""
    if isinstance(value, dict):
        return {scrub_text(k) if isinstance(k, str) else k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
