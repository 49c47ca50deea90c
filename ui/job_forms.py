"""What the Jobs page's launch forms need besides widgets: the engines' errors said in the form's terms,
the model-folder check, and the VLM folders on offer.

The job specs (jobs/*.py, their params()) serve the command line too, so their messages name its flags
("pass --map field=column"). A web form has fields, not flags: each kind maps the flags its engine may
mention to the label of the form field that sets the same thing (None: this form cannot set it).
Stays light: no torch/transformers here (curation.vlm reads config.json; it loads no model).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

FORM_FIELDS: dict[str, dict[str, str | None]] = {
    "ingest": {"--map": "Column mapping", "--mapping": "Column mapping", "--pii": "Column mapping", "--format": "Format",
               "--name": "Source name", "--image-root": "Image root"},
    "ocr": {"--device": None},
    "clip_score": {"--device": "Device", "--model": "Model"},
    "generate": {"--base-url": "LLM base URL", "--model": "LLM model name"},
    "grounding": {"--on": "Score", "--model": "VLM", "--device": "Device"},
    "export": {"--out": None, "--force": None, "--family": None},
    "train": {"--name": "Run name", "--model": "Base VLM", "--dtype": None},
    "eval": {"--name": "Evaluation name", "--model": "Base VLM", "--judge-url": None},
}

# a flag with what usually follows it in a hint: "--map field=column", "--format {csv,jsonl}", "--mapping
# FILE.yaml", and an "(or --other ARG)" alternative; the verb before it ("pass", "give") goes too
_HINT = re.compile(
    r"(?P<verb>\b(?:pass|give|use)\s+)?--(?P<flag>[a-z][a-z0-9-]*)"
    r"(?:[ =](?:\{[^}]*\}|[A-Za-z_]+=[A-Za-z_,]+|[A-Z][A-Z0-9_]*(?:\.[a-z]+)?))?"
    r"(?:\s*\(or --[a-z][a-z0-9-]*[^)]*\))?"
)


def in_form_terms(kind: str, message: str) -> str:
    """``message`` with the command line's flags replaced by the form's field names. Text in backticks (a
    command to run on the server) is left as it is."""
    fields = FORM_FIELDS.get(kind, {})

    def replace(match: re.Match) -> str:
        flag = f"--{match['flag']}"
        if flag not in fields:
            return match.group(0)
        label = fields[flag]
        if label is None:
            return f"the command line's {flag} (this form does not offer it)"
        starts_clause = match["verb"] is not None or match.start() == 0 or message[: match.start()].rstrip().endswith((":", ";"))
        return f'set "{label}"' if starts_clause else f'"{label}"'

    parts = message.split("`")
    return "`".join(_HINT.sub(replace, part) if i % 2 == 0 else part for i, part in enumerate(parts))


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
