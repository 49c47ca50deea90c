"""Named registries: one small class behind every "name -> entry" table of the project.

Every layer keeps a few of these (VLM families, export formats, generation tasks, declared stats and
tables, tiny-model builders, benchmarks, job kinds and their handlers). Each used to be a module-level
dict with its own duplicate check and its own "unknown name" message; :class:`Registry` is that dict,
written once. It lives in ``config`` (the layer that imports nothing of ours) so that every layer may use it.

Usage::

    from config.registry import Registry

    # entries added by hand, named when added
    PRESETS = Registry("preset")
    PRESETS.add(TrainConfig(), "paper")                 # returns the entry
    PRESETS.add(TrainConfig(), "paper")                 # DuplicateName: preset 'paper' is registered twice

    # entries that know their own name (``key``): ``add`` is then a bare decorator
    FAMILIES = Registry("VLM family", plural="VLM families", key=lambda cls: cls.family)

    @FAMILIES.add
    class Gemma3(VLMAdapter):
        family = "gemma3"

    # a decorator that names its entry
    SPECS = Registry("job kind")

    @SPECS.named("ocr")
    class OcrSpec(JobSpec): ...

    # reading: a read-only Mapping
    SPECS["ocr"]                 # UnknownName (a KeyError and a ValueError) naming every known entry
    SPECS.get("ocr")             # None when unknown, as dict.get
    "ocr" in SPECS; list(SPECS); SPECS.items(); len(SPECS)   # names in the order they were added

Lazy loading: ``Registry(..., package="jobs", skip={"registry", "submit"})`` fills itself from the
package's modules (each adds its own entries when imported): the first read that needs every entry
(iteration, ``len``, ``in``, ``get``, or ``[name]`` of a name not added yet) imports every module of
the package but those in ``skip``, once, in name order. ``add`` never loads (the modules being loaded
call it). ``load(name)`` imports only the module called ``name``, for a caller that needs one entry
cheaply (a command line reading one job kind's choices); ``load()`` imports them all now.

Options: ``verb`` says what adding is called in the duplicate message (``"declared"`` for the stats and
tables that ``declare()`` adds); ``idempotent=True`` lets an entry equal to the one already under its
name be added again as a no-op (a registry whose module may be imported twice); without it a second
add of a name is always an error, whatever the entry.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E")


class UnknownName(KeyError, ValueError):
    """A name no entry has. A KeyError (the registry is a Mapping) and a ValueError (the name came from a
    user: callers that refuse a bad value with ValueError need no second except clause)."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr of it
        return str(self.args[0]) if self.args else ""


class DuplicateName(ValueError):
    """A second entry under a name that has one."""


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, in the order they were added; see the module's docstring for the whole API."""

    def __init__(self, kind: str, *, plural: str | None = None, key: Callable[[T], str] | None = None,
                 package: str | None = None, skip: Iterable[str] = (), verb: str = "registered", idempotent: bool = False):
        self.kind = kind  # what one entry is, in messages: "export format", "VLM family"
        self.plural = plural or f"{kind}s"
        self.key = key
        self.package = package
        self.skip = frozenset(skip)
        self.verb = verb
        self.idempotent = idempotent
        self._entries: dict[str, T] = {}
        self._loaded = package is None
        self._loading = False
        self._lock = threading.RLock()  # one thread imports the package; the others wait for all of it

    # ---- adding ----------------------------------------------------------------------------------------
    def add(self, entry: E, name: str | None = None) -> E:
        """Add ``entry`` under ``name`` (default: ``key(entry)``) and return it, so that a registry with a
        ``key`` can be used as a bare decorator. DuplicateName if the name has an entry already."""
        if name is None:
            if self.key is None:
                raise TypeError(f"the {self.kind} registry has no key: name the entry (add(entry, name) or @named(name))")
            name = self.key(entry)
        if name in self._entries:
            if self.idempotent and self._entries[name] == entry:
                return entry
            raise DuplicateName(f"{self.kind} {name!r} is {self.verb} twice")
        self._entries[name] = entry
        return entry

    def named(self, name: str) -> Callable[[E], E]:
        """A decorator adding what it decorates under ``name``: ``@SPECS.named("ocr")``."""
        return lambda entry: self.add(entry, name)

    # ---- loading ---------------------------------------------------------------------------------------
    def load(self, name: str | None = None) -> "Registry[T]":
        """Import the package's modules (see the module docstring); with ``name``, only that module, if the
        package has one of that name (a module that exists but fails to import raises)."""
        if self.package is None:
            return self
        if name is not None:
            if name not in self.skip and name not in self._entries:
                module = f"{self.package}.{name}"
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name != module:  # the module is there but one of its own imports is not
                        raise
            return self
        if self._loaded:
            return self
        with self._lock:
            # a module being imported may read the registry: it sees what is added so far, no second import
            if self._loaded or self._loading:
                return self
            self._loading = True
            try:
                package = importlib.import_module(self.package)
                for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
                    if module not in self.skip:
                        importlib.import_module(f"{self.package}.{module}")
                self._loaded = True
            finally:
                self._loading = False
        return self

    # ---- reading (Mapping) -----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            self.load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" (a list from a bad config) is unknown too
            known = ", ".join(map(str, self._entries)) or "none yet"
            raise UnknownName(f"unknown {self.kind} {name!r}; {self.plural} are: {known}") from None

    def get(self, name: str, default=None):
        self.load()
        try:
            return self._entries.get(name, default)
        except TypeError:
            return default

    def __contains__(self, name: object) -> bool:
        self.load()
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._entries))  # a copy: a module loaded while iterating may add entries

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)}{'' if self._loaded else ', ... not loaded'})"
