"""The VLM family registry: each module of ``families/`` adds its adapter classes with ``@FAMILIES.add``
(under the class's ``family`` name); the registry imports those modules on its first read, so nothing
lists the families by hand."""
from __future__ import annotations

from config.registry import Registry

from .base import VLMAdapter

FAMILIES: Registry[type[VLMAdapter]] = Registry("VLM family", plural="VLM families", key=lambda cls: cls.family, package="curation.vlm.families")
