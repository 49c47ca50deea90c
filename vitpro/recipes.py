"""Pipeline recipes: ``vitpro run recipe.yaml`` runs a list of stages, each a job or an in-process step.

A recipe is a YAML mapping (docs/how-to/recipes.md has the whole story)::

    name: catalog                      # optional, for messages
    vars:                              # optional: ${data} below; `--var data=...` overrides
      data: ${recipe_dir}/data
    settings:                          # optional: how `vitpro run` runs it (nothing secret: VITPRO_* stay in the environment)
      local: false                     #   start workers for the run when none serve its queues (as --local)
      workers: 1                       #   how many
    stages:
      - ingest:
          source: ${data}/listings.jsonl    # (in a one-line {...} mapping, "${...}" needs quotes)
      - ocr: {batch_size: 16}
      - grounding: {model: /models/idefics2, batch_size: 8}
        label: score-idefics2          # optional: how --from and ${stages.LABEL.FIELD} name it
      - snapshot: {name: "v{version}", filter: keep}
        if_exists: skip                # a stage that makes a named thing: skip it when that exists

Each stage entry is one mapping with exactly one stage key, whose value is that stage's fields: the
fields of the job kind's spec (jobs/<kind>.py), or of the in-process stages' specs
(vitpro/recipe_stages.py). ``label`` and ``if_exists`` sit beside the stage key, never among its fields,
so they can never clash with a field of the same name (a training run's ``name``).

``${NAME}`` in a value is a variable: ``recipe_dir`` (the recipe file's folder), ``home`` ($VITPRO_HOME),
``out_root`` ($VITPRO_OUT_PATH) or one of ``vars``; ``${stages.LABEL.FIELD}`` is an earlier stage's
resolved field or output (a grounding stage's ``model_id``, a snapshot stage's ``name``); ``$$`` is a
``$``. A value that is only a reference keeps its type (a number, a mapping). A value starting with
``./`` or ``../`` is a path relative to the recipe's folder; a field that takes a mapping (a column
mapping, a training config) may instead name a YAML file holding it.

Before anything runs every stage is built and checked (:class:`Planner`); what only an earlier stage's
run can tell (the name of a snapshot that embeds the DuckLake version, a job's id) is stood in for, and
the checks that depend on it are listed as deferred and made when the stage is reached.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from config.fields import FieldError, base_type, build, param, to_plain

from .recipe_stages import LOCAL_STAGES, VERSION, StageContext, StageFailed

TOP_KEYS = ("name", "description", "vars", "settings", "stages")
ENTRY_KEYS = ("label", "if_exists")
BUILTINS = ("recipe_dir", "home", "out_root")
LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# kinds whose stage makes a thing with a name (its ``name`` field): ``if_exists`` says what to do when it exists
MAKES = {"sample": "selection", "filter": "saved filter", "pilot": "pilot", "snapshot": "snapshot", "train": "training run",
         "eval": "evaluation", "ablate": "evaluation"}
IF_EXISTS = {"pilot", "snapshot", "train", "eval", "ablate"}  # a selection and a filter are replaced, as the commands do
# (kind, field) -> the named thing it reads: made by an earlier stage, or already in the store
NEEDS = {("export", "snapshot"): "snapshot", ("train", "snapshot"): "snapshot", ("eval", "snapshot"): "snapshot",
         ("eval", "baseline"): "evaluation", ("ablate", "snapshot"): "snapshot", ("snapshot", "filter"): "saved filter",
         ("grounding", "selection"): "selection", ("pilot", "selection"): "selection", ("filter", "selection"): "selection"}
# fields this machine's settings decide, never a recipe (the CLI and the web app set them the same way)
MACHINE_FIELDS = {"allowed_roots": "VITPRO_IMAGE_ROOTS", "source_roots": "VITPRO_IMAGE_ROOTS"}


class _Loader(yaml.SafeLoader):
    """YAML whose booleans are true and false only (YAML 1.2): ``on: samples`` is the field ``on``, and an
    ablation grid's ``ocr: [on, off]`` are the words, not booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)


class RecipeError(ValueError):
    """A recipe that cannot be read; ``messages`` are every problem found, each naming where."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class RecipeSettings:
    """The recipe's ``settings:``: how ``vitpro run`` runs it. Where the store and broker are stays in the
    environment (VITPRO_*), so a recipe holds nothing secret and runs unchanged on another installation."""

    local: bool = param(False, help="Start worker processes for the run when no live worker serves a queue its stages need (as --local).")
    workers: int = param(1, min=1, max=16, help="How many worker processes the run starts when it starts its own (each serves every queue missing).")


@dataclass
class Stage:
    index: int
    kind: str
    label: str
    fields: dict[str, Any]
    if_exists: str = "fail"

    @property
    def where(self) -> str:
        return f"stages[{self.index}] ({self.label})"

    @property
    def is_job(self) -> bool:
        return self.kind not in LOCAL_STAGES


@dataclass
class Recipe:
    path: Path
    folder: Path
    name: str
    settings: RecipeSettings
    variables: dict[str, Any]
    stages: list[Stage]
    given_vars: tuple[str, ...] = ()  # the --var options it was loaded with (said again in a resume hint)

    def index_of(self, ref: str | int) -> int:
        """The stage a --from names: its label, or its index (0 is the first, as stages[0] in messages)."""
        text = str(ref).strip()
        for s in self.stages:
            if s.label == text:
                return s.index
        if text.lstrip("-").isdigit():
            i = int(text)
            if 0 <= i < len(self.stages):
                return i
            raise RecipeError([f"--from {text}: the recipe has stages 0 to {len(self.stages) - 1}"])
        raise RecipeError([f"--from {text}: no stage of that label; stages: {', '.join(s.label for s in self.stages)}"])

    def resume_hint(self, stage: Stage) -> str:
        import shlex

        extra = "".join(f" --var {shlex.quote(v)}" for v in self.given_vars)
        return f"vitpro run {shlex.quote(str(self.path))}{extra} --from {stage.label}"


# ---- stage kinds ------------------------------------------------------------------------------------
def stage_kinds() -> list[str]:
    from jobs.registry import kinds

    return sorted(set(kinds()) | set(LOCAL_STAGES))


def spec_class(kind: str) -> type:
    if kind in LOCAL_STAGES:
        return LOCAL_STAGES[kind]
    from jobs.registry import spec_for

    return spec_for(kind)


def describe_kind(kind: str) -> str:
    """One line: what the stage is, and where it runs."""
    cls = spec_class(kind)
    if kind in LOCAL_STAGES:
        return f"{cls.SUMMARY} Runs in the `vitpro run` process."
    import sys

    module = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    queue = getattr(cls, "QUEUE", "cpu")
    return f"{module} A job (queue {queue!r} by default)."


# ---- reading a recipe ---------------------------------------------------------------------------------
class _Unresolved(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


_TOKEN = re.compile(r"\$\$|\$\{([^{}]*)\}")
_WHOLE = re.compile(r"^\$\{([^{}]*)\}$")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(value: Any, lookup: Callable[[str, str], Any], path: str = "") -> Any:
    """``value`` with every ``${NAME}`` replaced by ``lookup(NAME, path)`` (which raises :class:`_Unresolved`)."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole:
            return lookup(whole.group(1).strip(), path)

        def one(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            found = lookup(m.group(1).strip(), path)
            if isinstance(found, (dict, list)):
                raise _Unresolved(path, f"${{{m.group(1)}}} is a mapping or a list: it can only stand alone as the whole value")
            return _text(found)

        return _TOKEN.sub(one, value)
    if isinstance(value, dict):
        return {k: substitute(v, lookup, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, lookup, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _paths(value: Any, folder: Path) -> Any:
    """``./x`` and ``../x`` made absolute against the recipe's folder."""
    if isinstance(value, str) and value.startswith(("./", "../")):
        return os.path.normpath(folder / value)
    if isinstance(value, dict):
        return {k: _paths(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_paths(v, folder) for v in value]
    return value


def _parse_var(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise RecipeError([f"--var takes NAME=VALUE, not {text!r}"])
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return name.strip(), raw if isinstance(value, (dict, list)) or value is None else value


def load_recipe(path: Path | str, given_vars: typing.Iterable[str] = (), *, settings=None) -> Recipe:
    """The recipe file read and its variables settled; :class:`RecipeError` listing every problem of its
    form (an unknown stage, a malformed entry, an unknown variable). The stages' fields are checked by
    :class:`Planner`."""
    from config.settings import load_settings

    s = settings or load_settings()
    path = Path(path)
    folder = path.expanduser().resolve().parent
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise RecipeError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise RecipeError([f"{path}: a recipe is a mapping with a list of `stages:`, not {type(data).__name__}"])
    errors: list[str] = []
    unknown = sorted(set(map(str, data)) - set(TOP_KEYS))
    if unknown:
        errors.append(f"{path}: unknown key(s) {', '.join(unknown)}; a recipe has {', '.join(TOP_KEYS)}")

    variables: dict[str, Any] = {"recipe_dir": str(folder), "home": str(s.home), "out_root": s.out_root}
    raw_vars = data.get("vars") or {}
    if not isinstance(raw_vars, dict):
        errors.append(f"vars: a mapping of NAME: VALUE, not {raw_vars!r}")
        raw_vars = {}
    raw_vars = {str(k): v for k, v in raw_vars.items()}
    for text in given_vars:
        name, value = _parse_var(text)
        if name not in raw_vars:
            errors.append(f"--var {name}: the recipe has no variable {name!r}" + (f"; its variables: {', '.join(raw_vars)}" if raw_vars else ""))
        raw_vars[name] = value

    def lookup_var(name: str, where: str) -> Any:
        if name in variables:
            return variables[name]
        if name.startswith("stages."):
            raise _Unresolved(where, f"${{{name}}}: a stage's output can only be used in a later stage's fields")
        raise _Unresolved(where, f"unknown variable ${{{name}}}; variables: {', '.join(variables)}")

    for name, raw in raw_vars.items():
        if name in BUILTINS or name == "stages" or not LABEL.match(name):
            errors.append(f"vars.{name}: " + ("a variable of its own (built in)" if name in BUILTINS or name == "stages"
                                              else "a variable's name is letters, digits, '_' and '-', starting with a letter"))
            continue
        try:
            variables[name] = _paths(substitute(raw, lookup_var, f"vars.{name}"), folder)
        except _Unresolved as exc:
            errors.append(f"{exc.path}: {exc.message}")

    recipe_settings = RecipeSettings()
    try:
        raw_settings = substitute(data.get("settings") or {}, lookup_var, "settings")
        recipe_settings = build(RecipeSettings, raw_settings, prefix="settings.")
    except _Unresolved as exc:
        errors.append(f"{exc.path}: {exc.message}")
    except FieldError as exc:
        errors.append(f"{exc.field or 'settings'}: {exc.message}")

    stages = _read_stages(data.get("stages"), errors)
    if errors:
        raise RecipeError(errors)
    name = str(data.get("name") or path.stem)
    return Recipe(path=path, folder=folder, name=name, settings=recipe_settings, variables=variables, stages=stages, given_vars=tuple(given_vars))


def _read_stages(entries: Any, errors: list[str]) -> list[Stage]:
    known = stage_kinds()
    if not isinstance(entries, list) or not entries:
        errors.append("stages: a list of stages, e.g. `- ocr: {batch_size: 16}`" + ("" if entries is None else f", not {type(entries).__name__}"))
        return []
    stages: list[Stage] = []
    for i, entry in enumerate(entries):
        where = f"stages[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: a stage is a mapping with one stage key, e.g. `- ocr: {{batch_size: 16}}`, not {entry!r}")
            continue
        keys = [str(k) for k in entry if k not in ENTRY_KEYS]
        kinds = [k.replace("-", "_") for k in keys]
        if not keys:
            errors.append(f"{where}: no stage in it; stages: {', '.join(known)}")
            continue
        wrong = [k for k, kind in zip(keys, kinds) if kind not in known]
        if wrong:
            errors.append(f"{where}: unknown stage {wrong[0]!r}; stages: {', '.join(known)}"
                          + (f" (beside the stage: {', '.join(ENTRY_KEYS)})" if len(keys) > 1 else ""))
            continue
        if len(keys) > 1:
            errors.append(f"{where}: one stage per entry, not {', '.join(keys)}; each goes in an entry of its own")
            continue
        kind, fields = kinds[0], entry[keys[0]]
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            errors.append(f"{where} ({kind}): its fields are a mapping of FIELD: VALUE, not {fields!r}")
            continue
        label = entry.get("label")
        if label is not None and (not isinstance(label, str) or not LABEL.match(label)):
            errors.append(f"{where}.label: letters, digits, '_' and '-', starting with a letter; not {label!r}")
            continue
        if_exists = entry.get("if_exists", "fail")
        if "if_exists" in entry and kind not in IF_EXISTS:
            errors.append(f"{where} ({label or kind}).if_exists: only a stage that makes a named thing has it ({', '.join(sorted(IF_EXISTS))})")
            continue
        if if_exists not in ("fail", "skip"):
            errors.append(f"{where} ({label or kind}).if_exists: fail or skip, not {if_exists!r}")
            continue
        stages.append(Stage(index=i, kind=kind, label=label or "", fields={str(k): v for k, v in fields.items()}, if_exists=if_exists))
    # default labels: the kind; a kind's later stages kind-2, kind-3, ...
    taken = {s.label for s in stages if s.label}
    seen: dict[str, int] = {}
    for s in stages:
        if s.label:
            continue
        seen[s.kind] = seen.get(s.kind, 0) + 1
        s.label = s.kind if seen[s.kind] == 1 else f"{s.kind}-{seen[s.kind]}"
        if s.label in taken:
            errors.append(f"stages[{s.index}] ({s.kind}): its default label {s.label!r} is another stage's; give it a label")
        taken.add(s.label)
    labels: dict[str, int] = {}
    for s in stages:
        if s.label in labels and labels[s.label] != s.index:
            errors.append(f"stages[{s.index}].label: {s.label!r} is also stages[{labels[s.label]}]'s; labels are unique")
        labels.setdefault(s.label, s.index)
    return stages


def _load_files(cls: type, values: dict[str, Any], folder: Path, prefix: str = "") -> dict[str, Any]:
    """A field that takes a mapping (a dataclass) given as a YAML file's path: the file's mapping."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a spec whose hints cannot be read here: its own build says what is wrong
        return values
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name not in out:
            continue
        inner = base_type(hints.get(f.name))
        if not (isinstance(inner, type) and dataclasses.is_dataclass(inner)):
            continue
        value = out[f.name]
        if isinstance(value, str):
            file = Path(value).expanduser()
            file = file if file.is_absolute() else folder / file
            try:
                data = read_yaml(file.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise FieldError(f"{prefix}{f.name}", f"a mapping of {inner.__name__}'s fields, or a YAML file of one; cannot read {file}: {exc}") from None
            if not isinstance(data, dict):
                raise FieldError(f"{prefix}{f.name}", f"{file} holds no mapping of {inner.__name__}'s fields")
            out[f.name] = data
        elif isinstance(value, dict) and not hasattr(inner, "from_dict"):
            out[f.name] = _load_files(inner, value, folder, f"{prefix}{f.name}.")
    return out


def _machine_fields(kind: str, cls: type, values: dict[str, Any]) -> None:
    """Refuse the fields no recipe may set: derived ones (the job settles them) and the machine's own."""
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        if f.name in MACHINE_FIELDS:
            raise FieldError(f.name, f"set by this machine's {MACHINE_FIELDS[f.name]}, not by a recipe")
        if f.metadata.get("derived"):
            raise FieldError(f.name, "derived from the other fields when the stage is resolved; a recipe does not set it")
        if not f.metadata.get("stored", True):
            raise FieldError(f.name, "set by this machine's settings, not by a recipe")


def _machine_policy(spec: Any, settings) -> Any:
    """What the command line and the web app impose from the settings: VITPRO_REDACT=0 turns redaction off,
    VITPRO_IMAGE_ROOTS bounds where images come from."""
    names = {f.name for f in dataclasses.fields(spec)}
    changes: dict[str, Any] = {}
    if "redact" in names and isinstance(spec.redact, bool):
        changes["redact"] = settings.redact and spec.redact
    if "allowed_roots" in names:
        changes["allowed_roots"] = settings.image_roots
    return dataclasses.replace(spec, **changes) if changes else spec


# ---- planning -------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A stage built and checked against what is known: its spec, its resolved fields and queue, or why not."""

    stage: Stage
    values: dict[str, Any] | None = None  # its fields, references and files read
    spec: Any = None
    params: dict[str, Any] | None = None  # resolved: what the job stores, or the in-process stage's fields
    queue: str | None = None  # a job's queue; None: in process
    errors: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    skip: str | None = None  # why it is skipped (what it makes exists; if_exists: skip)
    outputs: dict[str, Any] = field(default_factory=dict)


def _a(thing: str) -> str:
    return ("an " if thing[0] in "aeiou" else "a ") + thing


def _error(where: str, exc: Exception) -> str:
    """``where.field: message`` for an error about a field (a FieldError, or any error a spec marked with the
    field it is about: ``config.fields.about``), else ``where: message``."""
    field_name = getattr(exc, "field", None)
    message = getattr(exc, "message", None) or (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc))
    return f"{where}.{field_name}: {message}" if field_name else f"{where}: {message}"


def _walk(value: Any, path: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


class Planner:
    """Builds each stage in order against the outputs of the stages before it (``known``). Before a run,
    an output only a run can tell is a stand-in text (``pending``) whose checks are deferred."""

    def __init__(self, recipe: Recipe, ctx: StageContext):
        self.recipe = recipe
        self.ctx = ctx
        self.known: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, str] = {}  # stand-in -> what it waits for
        self.never: set[str] = set()  # stand-ins no run of this invocation will settle (stages before --from)
        self.shown: dict[str, str] = {}  # stand-in -> the reference it stands for, as a plan shows it
        self.invalid: set[str] = set()  # labels of stages found not valid: what names them is not checked further

    def show(self, value: Any) -> str:
        text = _show(value)
        for token, shown in self.shown.items():
            text = text.replace(token, shown)
        return text

    # -- references
    def _standin(self, label: str, name: str, why: str, *, never: bool = False) -> str:
        token = re.sub(r"[^A-Za-z0-9-]", "-", f"pending-{label}-{name}")
        self.pending[token] = why
        self.shown[token] = f"${{stages.{label}.{name}}}"
        if never:
            self.never.add(token)
        return token

    def _lookup(self, stage: Stage) -> Callable[[str, str], Any]:
        labels = [s.label for s in self.recipe.stages]

        def lookup(name: str, where: str) -> Any:
            if not name.startswith("stages."):
                if name in self.recipe.variables:
                    return self.recipe.variables[name]
                raise _Unresolved(where, f"unknown variable ${{{name}}}; variables: {', '.join(self.recipe.variables)}")
            parts = name.split(".")
            if len(parts) < 3:
                raise _Unresolved(where, f"${{{name}}}: write ${{stages.LABEL.FIELD}}")
            label, keys = parts[1], parts[2:]
            if label not in labels:
                raise _Unresolved(where, f"${{{name}}}: no stage labelled {label!r}; labels: {', '.join(labels)}")
            if labels.index(label) >= stage.index:
                raise _Unresolved(where, f"${{{name}}}: stage {label!r} does not come before this one")
            if label in self.invalid:
                raise _Unresolved(where, f"${{{name}}}: not checked, stage {label!r} is not valid (its own error says why)")
            value: Any = self.known.get(label, {})
            for i, key in enumerate(keys):
                if not isinstance(value, dict) or key not in value:
                    have = ", ".join(value) if isinstance(value, dict) and value else "nothing"
                    raise _Unresolved(where, f"${{{name}}}: stage {label!r} has no {'.'.join(keys[:i + 1])!r}; it has {have}")
                value = value[key]
            return value

        return lookup

    def _pending_in(self, values: dict[str, Any]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for path, value in _walk(values):
            if isinstance(value, str):
                tokens = [t for t in self.pending if t in value]
                if tokens:
                    found[path] = tokens
        return found

    # -- what the store holds
    def _existing(self, kind: str, spec: Any) -> dict[str, Any] | None:
        """The outputs of what this stage makes, when a thing of its name exists already."""
        if kind in ("pilot", "snapshot"):
            return spec.exists(self.ctx)
        from db.app import training

        engine = self.ctx.engine()
        try:
            found = training.get_run(engine, spec.name) if kind == "train" else training.get_eval(engine, spec.name)
        except training.RunError:
            return None
        return {**to_plain(spec), "name": found.name, "existing": True}

    def _in_store(self, thing: str, name: str) -> bool:
        if thing == "snapshot":
            from curation import snapshots

            try:
                snapshots.get(self.ctx.engine(), name)
                return True
            except snapshots.SnapshotError:
                return False
        if thing == "saved filter":
            from db.app import saved_filters

            try:
                saved_filters.get(self.ctx.engine(), name)
                return True
            except saved_filters.UnknownFilter:
                return False
        if thing == "selection":
            from db.lake.sampling import selection_names

            return any(n == name for n, _, _ in selection_names(self.ctx.lake()))
        if thing == "evaluation":
            from db.app import training

            try:
                training.get_eval(self.ctx.engine(), name)
                return True
            except training.RunError:
                return False
        return True

    def _made_before(self, stage: Stage, thing: str, name: str) -> bool | None:
        """True: an earlier stage makes it; None: an earlier stage makes one whose name is not known yet."""
        unknown = False
        for s in self.recipe.stages[: stage.index]:
            if MAKES.get(s.kind) != thing:
                continue
            made = self.known.get(s.label, {}).get("name")
            raw = s.fields.get("name")
            if isinstance(raw, str) and VERSION in raw and "$" not in raw:  # demo-v{version}: a name of that form or none
                if re.fullmatch(re.escape(raw).replace(re.escape(VERSION), r"\d+"), name):
                    unknown = True
            elif made is None or any(t in str(made) for t in self.pending):
                unknown = True
            elif made == name:
                return True
        return None if unknown else False

    # -- one stage
    def prepare(self, stage: Stage, *, mode: str = "check") -> Prepared:
        """``mode``: "check" (before a run: stand-ins allowed, their checks deferred), "run" (the stage is
        reached: everything known), or "done" (a stage before --from: only its outputs are wanted)."""
        p = Prepared(stage)
        where, cls = stage.where, spec_class(stage.kind)
        try:
            values = _paths(substitute(stage.fields, self._lookup(stage)), self.recipe.folder)
        except _Unresolved as exc:
            p.errors.append(f"{where}.{exc.path}: {exc.message}")
            return self._finish(p, mode)
        try:
            _machine_fields(stage.kind, cls, values)
            values = _load_files(cls, values, self.recipe.folder)
        except FieldError as exc:
            p.errors.append(_error(where, exc))
            return self._finish(p, mode)
        p.values = values
        pending = self._pending_in(values)
        unknowable = {path: tokens for path, tokens in pending.items() if mode == "run" or any(t in self.never for t in tokens)}
        if unknowable and mode != "done":
            for path, tokens in unknowable.items():
                p.errors.append(f"{where}.{path}: not known: {self.pending[next(t for t in tokens if mode == 'run' or t in self.never)]}")
            return self._finish(p, mode)
        try:
            spec = _machine_policy(cls.from_fields(values), self.ctx.settings)
        except FieldError as exc:
            p.errors.append(_error(where, exc))
            return self._finish(p, mode)
        p.spec = spec
        if stage.kind in IF_EXISTS and mode != "done" and self._check_exists(p, mode):
            return self._finish(p, mode)
        try:
            if stage.is_job:
                from jobs.registry import queue_of

                p.params = spec.params()
                p.queue = queue_of(stage.kind, p.params)
            else:
                p.spec = spec.resolve()
                p.params = to_plain(p.spec)
        except (ValueError, OSError, LookupError) as exc:
            field_name = getattr(exc, "field", None) or ""
            about = [path for path in pending if field_name and _related(field_name, path)] or \
                [path for path, tokens in pending.items() if any(t in str(exc) for t in tokens)]
            if about:
                p.deferred.append(f"{where}.{about[0]}: checked once {self.pending[pending[about[0]][0]]}")
            else:
                p.errors.append(_error(where, exc))
            if p.queue is None and stage.is_job:
                try:
                    p.queue = spec.queue()
                except Exception:
                    p.queue = getattr(cls, "QUEUE", None)
            return self._finish(p, mode)
        for (kind, name), thing in NEEDS.items():
            if kind != stage.kind:
                continue
            value = (p.params or {}).get(name)
            if not isinstance(value, str) or not value or mode == "done":
                continue
            if any(t in value for t in self.pending):
                continue  # said with the field's other deferred checks
            made = self._made_before(stage, thing, value)
            if made is True or (made is None and mode == "check") or self._in_store(thing, value):
                continue
            p.errors.append(f"{where}.{name}: no {thing} {value!r} in the store, and no earlier stage makes one")
        by_reason: dict[str, list[str]] = {}
        for path, tokens in pending.items():
            by_reason.setdefault(self.pending[tokens[0]], []).append(path)
        for why, paths in by_reason.items():
            p.deferred.append(f"{where}: {', '.join(paths)} known once {why}")
        if not stage.is_job and mode == "check" and p.spec.RUN_TIME_CHECKS:
            p.deferred.append(f"{where}: {p.spec.RUN_TIME_CHECKS}, when it runs")
        return self._finish(p, mode)

    def _check_exists(self, p: Prepared, mode: str) -> bool:
        """Skip (if_exists: skip) or refuse (if_exists: fail) a stage whose named thing exists; True when decided."""
        stage, spec = p.stage, p.spec
        thing, name = MAKES[stage.kind], str(spec.name)
        if any(t in name for t in self.pending) or (stage.kind == "snapshot" and VERSION in name and mode != "run"):
            p.deferred.append(f"{stage.where}: whether {_a(thing)} of its name exists (if_exists: {stage.if_exists}), when it is reached")
            return False
        existing = self._existing(stage.kind, spec)
        if existing is None:
            return False
        shown = existing.get("name", name)
        if stage.if_exists == "skip":
            p.skip = f"{_a(thing)} named {shown!r} exists (if_exists: skip)"
            p.outputs = existing
            return True
        p.errors.append(f"{stage.where}.name: {_a(thing)} named {shown!r} exists already; give another name, or `if_exists: skip` to keep it and go on")
        return True

    def _finish(self, p: Prepared, mode: str) -> Prepared:
        """The stage's outputs as later stages see them."""
        stage = p.stage
        if p.errors and mode != "done":
            self.invalid.add(stage.label)
        if p.skip:
            self.known[stage.label] = p.outputs
            return p
        never = mode == "done"
        if stage.is_job:
            out = dict(p.params if p.params is not None else (p.values or {}))
            why = (f"stage {stage.label!r} is before --from: its job id is not known" if never else f"stage {stage.label!r} has run")
            out["job"] = self._standin(stage.label, "job", why, never=never)
        else:
            out = p.spec.planned_outputs() if p.spec is not None else dict(p.values or {})
            if p.spec is not None and mode == "done" and hasattr(p.spec, "recall"):
                recalled = p.spec.recall(self.ctx)
                if recalled:
                    out = recalled
            for name in ("name",):
                if name not in out and p.spec is not None:
                    why = (f"stage {stage.label!r} is before --from and no {MAKES.get(stage.kind, 'output')} it made is found"
                           if never else f"stage {stage.label!r} has run (its {name} holds {VERSION})")
                    out[name] = self._standin(stage.label, name, why, never=never)
        p.outputs = out
        self.known[stage.label] = out
        return p


def check_fields(recipe: Recipe, echo: Callable[[str], None] | None = None) -> list[str]:
    """Each stage's fields checked by themselves (names, types, choices, bounds; an in-process stage's own
    checks), touching no store, file or model: a recipe written for another machine (s3:// paths, GPUs)
    checked here. An earlier stage's output stands for itself. Returns the problems found."""
    from config.fields import check

    errors: list[str] = []
    labels = [s.label for s in recipe.stages]
    for stage in recipe.stages:
        where, cls = stage.where, spec_class(stage.kind)

        def lookup(name: str, path: str, stage: Stage = stage) -> Any:
            if name in recipe.variables:
                return recipe.variables[name]
            parts = name.split(".")
            if parts[0] == "stages" and len(parts) >= 3 and parts[1] in labels[: stage.index]:
                return f"stages-{parts[1]}-{'-'.join(parts[2:])}"
            raise _Unresolved(path, f"${{{name}}}: neither a variable nor an earlier stage's output")

        try:
            values = _paths(substitute(stage.fields, lookup), recipe.folder)
            _machine_fields(stage.kind, cls, values)
            unread: list[str] = []
            while True:
                try:
                    values = _load_files(cls, values, recipe.folder)
                    break
                except FieldError as exc:  # a mapping in a file this machine does not have: left out, said so
                    if exc.field not in values or not isinstance(values[exc.field], str):
                        raise
                    unread.append(f"{exc.field} ({values.pop(exc.field)})")
            spec = cls.from_fields(values)
            spec.resolve() if not stage.is_job else check(spec)
        except _Unresolved as exc:
            errors.append(f"{where}.{exc.path}: {exc.message}")
            continue
        except (FieldError, ValueError) as exc:
            errors.append(_error(where, exc))
            continue
        if echo:
            echo(f"[{stage.index}] {stage.label}: {stage.kind}" + ("" if stage.is_job else ", in this process"))
            for key, value in values.items():
                echo(f"      {key}: {_show(value)}")
            if unread:
                echo(f"      not checked (a file not here): {', '.join(unread)}")
    return errors


# ---- running ------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    code: int  # 0: every stage done; 1: a stage failed; 2: the recipe is not valid; 130: interrupted
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> outputs of the stages done: run, or skipped as done already
    ran: list[str] = field(default_factory=list)  # labels of the stages run (not skipped)

    def done(self, planner: "Planner", label: str) -> None:
        self.outputs[label] = planner.known[label]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def print_plan(recipe: Recipe, planner: Planner, prepared: list[Prepared], start: int, echo: Callable[[str], None]) -> None:
    echo(f"recipe {recipe.name!r} ({recipe.path}): {len(recipe.stages)} stage(s)" + (f", from stages[{start}]" if start else ""))
    for p in prepared:
        stage = p.stage
        where = (f"queue {p.queue!r}" if p.queue else "a job") if stage.is_job else "in this process"
        echo(f"[{stage.index}] {stage.label}: {stage.kind}, {where}" + (f" - skipped: {p.skip}" if p.skip else ""))
        if p.skip:
            continue
        shown = p.params if p.params is not None else p.values or {}
        if p.params is None and p.values is not None:
            echo("      (as written: resolved when the stage is reached)")
        for key, value in shown.items():
            echo(f"      {key}: {planner.show(value)}")


def plan(recipe: Recipe, ctx: StageContext, start: int = 0) -> tuple[Planner, list[Prepared]]:
    """Every stage from ``start`` built and checked; the stages before it only for their outputs."""
    planner = Planner(recipe, ctx)
    for stage in recipe.stages[:start]:
        planner.prepare(stage, mode="done")
    return planner, [planner.prepare(stage, mode="check") for stage in recipe.stages[start:]]


def run_recipe(recipe: Recipe, *, start: int = 0, dry_run: bool = False, local: bool | None = None,
               echo: Callable[[str], None] | None = None, settings=None, explain: bool = True, check_workers: bool = True) -> RunResult:
    """Check every stage from ``start``, then (unless ``dry_run``) run them in order; a stage that fails
    stops the run and says how to resume. ``local``: start workers for queues no live worker serves
    (None: the recipe's ``settings.local``). ``explain``: list the checks deferred to when a stage is
    reached; ``check_workers``: False when the caller has started the workers itself."""
    import click

    from config.settings import load_settings

    s = settings or load_settings()
    say = echo or click.echo
    ctx = StageContext(settings=s, echo=lambda line: say(f"    {line}"))
    planner, prepared = plan(recipe, ctx, start)
    errors = [e for p in prepared for e in p.errors]
    if dry_run:
        print_plan(recipe, planner, prepared, start, say)
    if errors:
        for e in errors:
            say(f"error: {e}")
        say(f"the recipe is not valid: {len(errors)} problem(s); nothing was run")
        return RunResult(2)
    deferred = [d for p in prepared for d in p.deferred]
    if deferred and (explain or dry_run):
        say("checked when the stage is reached:")
        for d in deferred:
            say(f"  {d}")
    queues = sorted({p.queue for p in prepared if p.queue and not p.skip})
    from jobs.submit import queue_has_worker

    missing = [q for q in queues if not queue_has_worker(q, settings=s)] if check_workers or dry_run else []
    use_local = recipe.settings.local if local is None else local
    if dry_run:
        if missing:
            say(f"no live worker serves {', '.join(missing)}: " + ("the run starts its own (local)" if use_local else
                f"start one (vitpro worker --queues {','.join(missing)}) or run with --local"))
        say(f"valid: {len(prepared)} stage(s) checked; nothing was run (--dry-run)")
        return RunResult(0)
    from .local_workers import local_workers

    if missing and not use_local:
        click.secho(f"no live worker serves {', '.join(missing)}: the jobs wait until one starts "
                    f"(vitpro worker --queues {','.join(missing)}), or run with --local", fg="yellow", err=True)
    workers = (local_workers(",".join(missing), processes=recipe.settings.workers, log_path=s.home / "recipe-workers.log")
               if missing and use_local else nullcontext())
    result = RunResult(0)
    with workers:
        if missing and use_local:
            say(f"started {recipe.settings.workers} worker process(es) for {', '.join(missing)} (log: {s.home / 'recipe-workers.log'})")
        total = len(recipe.stages)
        for stage in recipe.stages[start:]:
            say(click.style(f"[{stage.index + 1}/{total}] {stage.label}: {stage.kind}", bold=True))
            p = planner.prepare(stage, mode="run")
            if p.errors:
                for e in p.errors:
                    say(f"error: {e}")
                return _stopped(recipe, stage, result, planner, say, "it is not valid now")
            if p.skip:
                say(f"    skipped: {p.skip}")
                result.done(planner, stage.label)
                continue
            try:
                outputs = _run_job(p, s) if stage.is_job else p.spec.run(ctx)
            except KeyboardInterrupt:
                say(f"stopped at stage {stage.where}; resume with: {recipe.resume_hint(stage)}")
                result.code = 130
                return result
            except StageFailed as exc:
                say(click.style(f"error: {exc}", fg="red"))
                return _stopped(recipe, stage, result, planner, say)
            except Exception as exc:  # an in-process stage's unexpected failure: said, with where to resume
                say(click.style(f"error: {type(exc).__name__}: {exc}", fg="red"))
                return _stopped(recipe, stage, result, planner, say)
            planner.known[stage.label] = outputs
            result.ran.append(stage.label)
            result.done(planner, stage.label)
    say(f"recipe {recipe.name!r}: {len(result.ran)} stage(s) run" + (f", {total - start - len(result.ran)} skipped" if total - start > len(result.ran) else ""))
    return result


def _stopped(recipe: Recipe, stage: Stage, result: RunResult, planner: Planner, say, why: str = "") -> RunResult:
    import click

    say(click.style(f"stage {stage.where} failed{': ' + why if why else ''}; the stages after it did not run", fg="red"))
    say(f"once fixed, resume from it: {recipe.resume_hint(stage)}")
    result.code = 1
    return result


def _run_job(p: Prepared, settings) -> dict[str, Any]:
    from jobs.submit import JobRefused, submit_job

    from .commands.group import wait_for_job

    try:
        job_id = submit_job(p.stage.kind, p.params, settings=settings)
    except JobRefused as exc:
        raise StageFailed(str(exc)) from None
    code = wait_for_job(job_id)
    if code == 130:
        raise KeyboardInterrupt
    if code:
        raise StageFailed(f"job {job_id} did not succeed (vitpro jobs show {job_id}; vitpro errors --job {job_id})")
    return {**p.params, "job": job_id}


def field_rows(kind: str) -> list[tuple[str, str, str, str]]:
    """(field, type, default, help) of a stage's fields, for `vitpro stages KIND` and the docs."""
    from dataclasses import MISSING

    from config.fields import described

    rows = []
    for f in described(spec_class(kind)):
        if f.name in MACHINE_FIELDS:
            continue
        tp = f.type.__name__ if isinstance(f.type, type) else str(f.type).replace("typing.", "")
        default = "(required)" if f.default is MISSING else _show(to_plain(f.default))
        extra = []
        if f.choices:
            extra.append("one of " + ", ".join(map(str, f.choices)))
        if f.min is not None:
            extra.append(f"at least {f.min:g}")
        if f.max is not None:
            extra.append(f"at most {f.max:g}")
        rows.append((f.name, tp, default, f.help + (f" ({'; '.join(extra)})" if extra else "")))
    return rows
