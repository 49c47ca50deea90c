"""The VLM family registry: ``@register`` on an adapter class adds it under its ``family`` name."""
from __future__ import annotations

from .base import VLMAdapter

FAMILIES: dict[str, type[VLMAdapter]] = {}


def register(cls: type[VLMAdapter]) -> type[VLMAdapter]:
    if cls.family in FAMILIES:
        raise ValueError(f"VLM family {cls.family!r} registered twice")
    FAMILIES[cls.family] = cls
    return cls
