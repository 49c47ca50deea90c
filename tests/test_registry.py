"""config.registry.Registry, the one helper behind every name -> entry table (VLM families, export formats,
tasks, stats, tables, tiny builders, OCR engines, presets, benchmarks)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from config.registry import DuplicateName, Registry, UnknownName


@dataclass(frozen=True)
class Thing:
    name: str
    size: int = 0


def test_entries_are_added_once_and_read_as_a_mapping_in_the_order_added():
    things = Registry("thing", key=lambda t: t.name)
    b = things.add(Thing("b"))
    assert things.add(Thing("a")) == Thing("a") and b == Thing("b")

    @things.named("c")
    def make_c():
        return Thing("c")

    assert list(things) == ["b", "a", "c"] and len(things) == 3 and things["c"] is make_c
    assert "a" in things and "z" not in things and things.get("z") is None and things.get("a") == Thing("a")
    assert dict(things.items())["b"] == Thing("b")
    with pytest.raises(DuplicateName, match="thing 'a' is registered twice"):
        things.add(Thing("a", 1))
    with pytest.raises(ValueError, match="registered twice"):  # even the very entry: a second add is a mistake
        things.add(things["a"])
    assert things["a"] == Thing("a")


def test_an_unknown_name_says_which_names_there_are_as_a_key_error_and_a_value_error():
    stats = Registry("stat", verb="declared")
    stats.add(1, "vis_attn")
    stats.add(2, "clip_score")
    with pytest.raises(UnknownName) as info:
        stats["ocr"]
    assert str(info.value) == "unknown stat 'ocr'; stats are: vis_attn, clip_score"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="stat 'vis_attn' is declared twice"):
        stats.add(3, "vis_attn")
    assert ["x"] not in stats and stats.get(["x"], "none") == "none"  # an unhashable name is simply unknown
    families = Registry("VLM family", plural="VLM families")
    with pytest.raises(KeyError, match="unknown VLM family 'x'; VLM families are: none yet"):
        families["x"]


def test_without_a_key_an_entry_must_be_named():
    with pytest.raises(TypeError, match="name the entry"):
        Registry("preset").add(Thing("x"))


def test_idempotent_registries_take_an_equal_entry_again():
    handlers = Registry("handler", key=lambda t: t.name, idempotent=True)
    handlers.add(Thing("ocr", 1))
    handlers.add(Thing("ocr", 1))  # a module imported a second time
    with pytest.raises(DuplicateName):
        handlers.add(Thing("ocr", 2))
    assert list(handlers) == ["ocr"]


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A package whose modules add their entries to the registry its __init__ holds."""
    name = "vitpro_test_plugins"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text(
        "from config.registry import Registry\n"
        f"PLUGINS = Registry('plugin', package={name!r}, skip={{'helpers'}})\n"
    )
    for module, entries in (("zeta", ["z1"]), ("alpha", ["a1", "a2"])):
        adds = "".join(f"PLUGINS.add({e!r}.upper(), {e!r})\n" for e in entries)
        (root / f"{module}.py").write_text(f"from . import PLUGINS\n{adds}")
    (root / "helpers.py").write_text("raise RuntimeError('a skipped module was imported')\n")
    (root / "broken.py").write_text("import vitpro_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def test_a_package_registry_imports_its_modules_on_the_first_read_but_not_the_skipped(plugin_package):
    import importlib
    from pathlib import Path

    plugins = importlib.import_module(plugin_package).PLUGINS
    assert f"{plugin_package}.alpha" not in sys.modules  # nothing read yet: nothing imported
    plugins.load("zeta")  # one module only
    assert plugins["z1"] == "Z1" and f"{plugin_package}.alpha" not in sys.modules
    plugins.load("no_such_module")  # a name the package has no module for: nothing to import
    with pytest.raises(ModuleNotFoundError, match="vitpro_no_such_module"):  # a module that is there but cannot import says why
        plugins.load("broken")
    with pytest.raises(ModuleNotFoundError):  # reading everything imports broken.py too
        list(plugins)
    Path(importlib.import_module(plugin_package).__path__[0], "broken.py").unlink()
    importlib.invalidate_caches()
    # the failed load is tried again on the next read; zeta came first (loaded alone), then the modules in name order
    assert list(plugins) == ["z1", "a1", "a2"] and plugins["a2"] == "A2" and len(plugins) == 3
    assert f"{plugin_package}.helpers" not in sys.modules
