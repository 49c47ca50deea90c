"""An mkdocs hook that writes the reference pages when the site is built, so they never drift from the code.

- ``reference/cli.md``: every command of ``vitpro`` (the click group ``vitpro.cli:cli``, walked recursively),
  with its usage line, its help and a table of its arguments and options (type, default, help).
- ``reference/job-specs.md``: every job kind of ``jobs.registry`` with the fields of its spec dataclass
  (type, default, help, choices, bounds), nested settings dataclasses listed under dotted names. A field's
  description comes from its metadata (``help``, ``choices``, ``min``, ``max``, ``derived``, ``stored``)
  where the spec declares it, else from the class's ``CHOICES``; a field without either is still listed.
- ``contributing.md`` and ``changelog.md``: the repository's CONTRIBUTING.md and CHANGELOG.md, so the
  site carries them without a second copy.

Nothing generated is written into docs/: the pages exist only in the built site. The hook imports the
checkout that holds mkdocs.yml (put first on ``sys.path``), never an installed copy of the project.
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import click
from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
SPECS_PAGE = "reference/job-specs.md"
ROOT_PAGES = {"contributing.md": "CONTRIBUTING.md", "changelog.md": "CHANGELOG.md"}


# ---- mkdocs events -----------------------------------------------------------------------------------
def on_config(config, **kwargs):
    root = str(_root(config))
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    root = _root(config)
    pages = {CLI_PAGE: cli_reference(), SPECS_PAGE: specs_reference()}
    for page, source in ROOT_PAGES.items():
        pages[page] = (root / source).read_text(encoding="utf-8")
    for uri, content in pages.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    return files


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


# ---- markdown helpers --------------------------------------------------------------------------------
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def text(value: str, *, cell: bool = False) -> str:
    """Plain text from code (a help string, a docstring) made safe for Markdown: HTML and emphasis
    characters are escaped outside backtick spans, which stay code; in a table cell, pipes outside code
    spans are escaped (the table extension leaves pipes inside them alone) and lines are joined."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(value):
        out.append(_escape(value[last:m.start()], cell))
        out.append(m.group(0))
        last = m.end()
    out.append(_escape(value[last:], cell))
    result = "".join(out)
    return " ".join(result.split()) if cell else result


def _escape(plain: str, cell: bool = False) -> str:
    plain = plain.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    plain = re.sub(r"([*_\[\]#])", r"\\\1", plain)
    return plain.replace("|", "\\|") if cell else plain


def code(value: Any) -> str:
    """``value`` as an inline code span (backticks inside it are handled by a longer fence)."""
    s = str(value).replace("\n", " ")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def cell_code(value: Any) -> str:
    """A code span in a table cell: Python-Markdown's tables do not split a row at a pipe inside one."""
    return code(value)


def help_blocks(help_text: str) -> list[str]:
    """A click help string as Markdown blocks: ``\\b`` paragraphs (click's "do not rewrap") become
    preformatted blocks, the others paragraphs of text; ``\\f`` ends the help, as click has it."""
    help_text = inspect.cleandoc(help_text.split("\f", 1)[0])
    blocks = []
    for para in re.split(r"\n\s*\n", help_text):
        if not para.strip():
            continue
        lines = para.splitlines()
        if lines[0].strip() == "\b":
            body = "\n".join(lines[1:])
            blocks.append("```text\n" + body + "\n```")
        else:
            blocks.append(text(" ".join(line.strip() for line in lines)))
    return blocks


# ---- the CLI reference -------------------------------------------------------------------------------
def _unset(value: Any) -> bool:
    return value is None or repr(value).endswith("UNSET")


def _range(t: click.ParamType) -> str:
    low, high = getattr(t, "min", None), getattr(t, "max", None)
    low_open, high_open = getattr(t, "min_open", False), getattr(t, "max_open", False)
    if low is not None and high is not None:
        return f"{low} to {high}" + (" (open)" if low_open or high_open else "")
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low}"
    if high is not None:
        return f"{'below' if high_open else 'at most'} {high}"
    return ""


def param_type(p: click.Parameter) -> str:
    t = p.type
    if isinstance(p, click.Option) and p.is_flag and not p.count:
        kind = "flag"
    elif isinstance(t, click.Choice):
        kind = "one of " + ", ".join(cell_code(c) for c in t.choices)
    elif isinstance(t, click.types._NumberRangeBase):
        base = "integer" if isinstance(t, click.IntRange) else "number"
        kind = f"{base}, {_range(t)}" if _range(t) else base
    elif isinstance(t, click.Path):
        kind = "folder" if not t.file_okay and t.dir_okay else ("file" if not t.dir_okay else "path")
    else:
        kind = {"string": "text", "integer": "integer", "float": "number", "boolean": "true/false"}.get(t.name, t.name)
    if getattr(p, "multiple", False):
        kind += ", repeatable"
    if p.nargs == -1:
        kind += ", any number"
    elif p.nargs > 1:
        kind += f", {p.nargs} values"
    return kind


def param_default(p: click.Parameter) -> str:
    default = p.default
    if callable(default) or _unset(default):
        return ""
    if isinstance(p, click.Option) and p.is_flag and not p.count:
        if p.secondary_opts:
            return cell_code(p.opts[0] if default else p.secondary_opts[0])
        return "on" if default is True else ""
    if isinstance(default, (list, tuple)):
        return ", ".join(cell_code(v) for v in default) if default else ""
    if isinstance(default, enum.Enum):
        default = default.value
    return cell_code(default)


def param_names(p: click.Option) -> str:
    return " / ".join(cell_code(o) for o in [*p.opts, *p.secondary_opts])


def param_help(p: click.Parameter) -> str:
    parts = []
    if p.required:
        parts.append("**Required.**")
    if getattr(p, "help", None):
        parts.append(text(p.help, cell=True))
    envvar = p.envvar
    if envvar:
        names = envvar if isinstance(envvar, (list, tuple)) else [envvar]
        parts.append("Environment: " + ", ".join(cell_code(n) for n in names) + ".")
    return " ".join(parts)


def _argument_metavar(p: click.Argument, ctx: click.Context) -> str:
    try:
        return p.make_metavar(ctx)
    except TypeError:  # click before 8.2: make_metavar() takes no context
        return p.make_metavar()


def command_section(cmd: click.Command, ctx: click.Context, depth: int) -> list[str]:
    path = ctx.command_path
    anchor = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    lines = [f"{'#' * depth} {path} {{#{anchor}}}", ""]
    usage = " ".join([path, *cmd.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    if cmd.deprecated:
        lines += ["*Deprecated.*", ""]
    for block in help_blocks(cmd.help or cmd.short_help or ""):
        lines += [block, ""]
    params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False) and not _is_help(p, ctx)]
    arguments = [p for p in params if isinstance(p, click.Argument)]
    options = [p for p in params if isinstance(p, click.Option)]
    if arguments:
        lines += ["| Argument | Type | Required |", "|---|---|---|"]
        for p in arguments:
            lines.append(f"| {cell_code(_argument_metavar(p, ctx))} | {param_type(p)} | {'yes' if p.required else 'no'} |")
        lines.append("")
    if options:
        lines += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
        for p in options:
            lines.append(f"| {param_names(p)} | {param_type(p)} | {param_default(p)} | {param_help(p)} |")
        lines.append("")
    if isinstance(cmd, click.Group):
        subs = _visible_commands(cmd, ctx)
        if subs:
            lines += ["Commands: " + ", ".join(f"[{name}](#{anchor}-{re.sub(r'[^a-z0-9]+', '-', name.lower())})" for name, _ in subs) + ".", ""]
        for name, sub in subs:
            lines += command_section(sub, click.Context(sub, info_name=name, parent=ctx), min(depth + 1, 6))
    return lines


def _is_help(p: click.Parameter, ctx: click.Context) -> bool:
    """The ``-h/--help`` option every command has (said once at the top of the page)."""
    return isinstance(p, click.Option) and set(p.opts) <= set(ctx.help_option_names) and p.is_flag and p.expose_value is False


def _visible_commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            found.append((name, sub))
    return found


def cli_reference() -> str:
    from vitpro.cli import cli

    ctx = click.Context(cli, info_name="vitpro")
    commands = _visible_commands(cli, ctx)
    lines = [
        "# Command line reference",
        "",
        "Generated from the `vitpro` command's own definitions (click) each time the site is built: the usage, "
        "help, arguments and options below are what `vitpro COMMAND --help` prints. Every command takes "
        "`-h` / `--help`.",
        "",
        "| Command | What it does |",
        "|---|---|",
    ]
    for name, cmd in commands:
        anchor = re.sub(r"[^a-z0-9]+", "-", f"vitpro {name}".lower()).strip("-")
        lines.append(f"| [{code('vitpro ' + name)}](#{anchor}) | {text(cmd.get_short_help_str(limit=120), cell=True)} |")
    lines.append("")
    root = ["## vitpro {#vitpro}", "", "```text", " ".join(["vitpro", *cli.collect_usage_pieces(ctx)]), "```", ""]
    for block in help_blocks(cli.help or ""):
        root += [block, ""]
    root_options = [p for p in cli.get_params(ctx) if isinstance(p, click.Option) and not p.hidden and not _is_help(p, ctx)]
    if root_options:
        root += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
        root += [f"| {param_names(p)} | {param_type(p)} | {param_default(p)} | {param_help(p)} |" for p in root_options]
        root.append("")
    lines += root
    for name, cmd in commands:
        lines += command_section(cmd, click.Context(cmd, info_name=name, parent=ctx), 2)
    return "\n".join(lines) + "\n"


# ---- the job spec reference --------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that names something only a type checker imports
        return {}


def _strip_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return tp


def _nested_dataclass(cls: type, f: dataclasses.Field) -> type | None:
    """The settings dataclass a field holds (``config: VisAttnConfig``), or None."""
    hint = _strip_optional(_hints(cls).get(f.name, f.type))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if f.default_factory is not dataclasses.MISSING:
        try:
            made = f.default_factory()
        except Exception:
            made = None
        if dataclasses.is_dataclass(made) and not isinstance(made, type):
            return type(made)
    if isinstance(f.type, str):  # a string annotation get_type_hints could not resolve: its names, one by one
        names = vars(sys.modules.get(cls.__module__, object()))
        for word in re.findall(r"[A-Za-z_][\w.]*", f.type):
            found = names.get(word)
            if isinstance(found, type) and dataclasses.is_dataclass(found):
                return found
    return None


def _type_text(f: dataclasses.Field) -> str:
    tp = f.type
    if isinstance(tp, str):
        return tp
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        try:
            value = f.default_factory()
        except Exception:
            return "(computed)"
    else:
        return "**required**"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{cell_code(type(value).__name__ + '()')}, below"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return cell_code(repr(value))


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"≥ {low:g}"
    if high is not None:
        return f"≤ {high:g}"
    return ""


def _choices(cls: type, f: dataclasses.Field) -> tuple | None:
    found = f.metadata.get("choices")
    if found is None:
        found = (getattr(cls, "CHOICES", None) or {}).get(f.name)
    return tuple(found) if found is not None else None


def field_rows(cls: type, prefix: str = "", seen: tuple[type, ...] = ()) -> list[str]:
    """One table row per field of the dataclass ``cls``; a nested settings dataclass follows its field
    with its own fields under dotted names."""
    rows = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        name = prefix + f.name
        choices = _choices(cls, f)
        notes, names = [], []
        if meta.get("derived"):
            notes.append("*Set at launch from the other fields; not given by a user.*")
        if meta.get("stored") is False:
            notes.append("*Checked at launch; not stored with the job.*")
        if meta.get("flag"):
            names.append(f"Command line: {cell_code(meta['flag'])}.")
        if meta.get("label"):
            names.append(f"Form: \u201c{text(str(meta['label']), cell=True)}\u201d.")
        help_text = text(meta.get("help") or "", cell=True)
        description = " ".join(part for part in [*notes, help_text, *names] if part)
        rows.append(
            f"| {cell_code(name)} | {cell_code(_type_text(f))} | {_default_text(f)} | "
            f"{', '.join(cell_code(c) for c in choices) if choices else ''} | {_bounds_text(meta)} | {description} |"
        )
        nested = _nested_dataclass(cls, f)
        if nested is not None and nested not in seen and len(seen) < 4:
            rows += field_rows(nested, f"{name}.", (*seen, nested))
    return rows


def _queue_text(cls: type) -> str:
    queue = getattr(cls, "QUEUE", "")
    picks = any(name in vars(cls) for name in ("queue", "queue_for"))
    return f"{code(queue)}" + (" by default; the fields can pick another (see the description)" if picks else "")


def _description(cls: type) -> list[str]:
    docs = []
    module = sys.modules.get(cls.__module__)
    own = cls.__dict__.get("__doc__")
    if own and own.startswith(cls.__name__ + "("):  # the signature dataclasses write where a class has no docstring
        own = None
    for doc in (getattr(module, "__doc__", None), own):
        if doc and doc.strip():
            docs += help_blocks(doc)
    return docs


def specs_reference() -> str:
    registry = importlib.import_module("jobs.registry")
    if hasattr(registry, "kinds") and hasattr(registry, "spec_for"):
        specs = [(kind, registry.spec_for(kind)) for kind in registry.kinds()]
    else:  # a registry that is only a mapping of kind -> spec class
        specs = sorted(registry.SPECS.items())
    lines = [
        "# Job spec reference",
        "",
        "Generated from the job kinds' spec dataclasses (`jobs/<kind>.py`, registered in `jobs.registry`) each "
        "time the site is built. A spec holds every parameter of one kind of job; the command line, the web "
        "app's Jobs page and the worker's handler all read it. A field marked **required** has no default. "
        "Nested settings are listed under dotted names (`config.segment`).",
        "",
        "| Kind | Spec | Queue |",
        "|---|---|---|",
    ]
    for kind, cls in specs:
        lines.append(f"| [{code(kind)}](#kind-{kind.replace('_', '-')}) | {code(cls.__name__)} | {_queue_text(cls)} |")
    lines.append("")
    for kind, cls in specs:
        lines += [f"## {kind} {{#kind-{kind.replace('_', '-')}}}", "",
                  f"`{cls.__module__}.{cls.__name__}`, queue {_queue_text(cls)}.", ""]
        for block in _description(cls):
            lines += [block, ""]
        rows = field_rows(cls, seen=(cls,))
        if rows:
            lines += ["| Field | Type | Default | Choices | Bounds | Description |", "|---|---|---|---|---|---|", *rows, ""]
        else:
            lines += ["No parameters.", ""]
    return "\n".join(lines) + "\n"
