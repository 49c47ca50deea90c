"""Readable names for model ids in pickers and captions: a hub id as it is, a local folder by its name
(``curation.model_ids.public_model_id``), never a machine path. Where two ids would read the same, each
gets just enough of its parent folders to tell them apart."""
from __future__ import annotations

from pathlib import PurePath
from typing import Iterable

from curation.model_ids import public_model_id


def _tail(model_id: str, parts: int) -> str:
    base, hash_, suffix = model_id.removeprefix("local-dir:").partition("#")
    names = PurePath(base.rstrip("/\\")).parts
    names = [n for n in names if n not in ("/", "\\")]
    return "/".join(names[-parts:]) + hash_ + suffix


def model_labels(model_ids: Iterable[str]) -> dict[str, str]:
    """{model id: the name a picker shows}, unique among ``model_ids``."""
    ids = list(dict.fromkeys(m for m in model_ids if m))
    labels = {m: public_model_id(m) for m in ids}
    for parts in range(2, 8):
        seen: dict[str, list[str]] = {}
        for m, label in labels.items():
            seen.setdefault(label, []).append(m)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            break
        for group in clashes:
            for m in group:
                labels[m] = _tail(m, parts)
    return labels


_MARKDOWN = set("\\`*_{}[]()#+-.!|~<>:$&")


def md(text: object) -> str:
    """``text`` as Markdown that shows it literally: a name a user typed (a snapshot called ``**new**``, a
    filter called ``:red[x]`` or ``[docs](http://...)``) is shown as typed, never as bold, colour or a link,
    in every element that renders Markdown (messages, metric labels, expanders)."""
    return "".join("\\" + c if c in _MARKDOWN else c for c in str(text))
