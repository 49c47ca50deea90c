"""What the Jobs page's launch forms need besides the spec's widgets (ui/spec_widgets.py): the
model-folder check and the VLM folders on offer.
Stays light: no torch/transformers here (curation.vlm reads config.json; it loads no model).
"""
from __future__ import annotations

import json
from pathlib import Path


def vlm_folder_problem(folder: str, label: str) -> str | None:
    """Why ``folder`` cannot be the VLM of a job, in the form's terms; None when a VLM adapter serves it."""
    from curation.vlm import FAMILIES, UnsupportedModel, adapter_for

    if not folder.strip():
        return f'"{label}": choose a model from the list or type a checkpoint folder'
    path = Path(folder).expanduser()
    if not path.is_dir():
        return f'"{label}": there is no folder {folder}'
    if not (path / "config.json").is_file():
        return f'"{label}": {folder} is not a model checkpoint (it has no config.json)'
    try:
        adapter_for(path)
    except UnsupportedModel:
        model_type = _model_type(path)
        known = ", ".join(f"{a.title} ({'/'.join(a.model_types)})" for _, a in sorted(FAMILIES.items()))
        return f'"{label}": {path.name} is a {model_type!r} model, not a VLM family this app supports: {known}'
    except ValueError as exc:  # a config.json that is not JSON
        return f'"{label}": cannot read {path / "config.json"}: {exc}'
    return None


def _model_type(path: Path) -> str:
    try:
        return json.loads((path / "config.json").read_text()).get("model_type") or "unknown"
    except (OSError, ValueError, AttributeError):
        return "unknown"


def scan_signature(models: Path) -> tuple:
    """What the VLM list depends on: each folder's config.json and its modification time (a stat per
    folder, no file read), so the list is read again only when a checkpoint is added, removed or changed."""
    if not models.is_dir():
        return ()
    found = []
    for folder in models.iterdir():
        try:
            found.append((folder.name, (folder / "config.json").stat().st_mtime_ns))
        except OSError:  # no config.json: not a checkpoint
            continue
    return tuple(sorted(found))


def vlm_folders(models: Path) -> dict[str, str]:
    """Checkpoint folders under ``models`` that a VLM adapter serves: path -> "name (family)"."""
    from curation.vlm import UnsupportedModel, adapter_for

    found = {}
    for name, _ in scan_signature(models):
        folder = models / name
        try:
            found[str(folder)] = f"{name} ({adapter_for(folder).title})"
        except (UnsupportedModel, ValueError):  # another kind of model (CLIP, a text LM) or a broken config
            continue
    return found
