"""Click options made from a job spec's fields (config/fields.py), so a command's defaults, choices,
bounds and help are the spec's, and a spec's refusal is said with the command's own flag.

    @spec_option(GroundingJob, "batch_size")          # --batch-size, IntRange(1), default 8, the spec's help
    @spec_option(GroundingJob, "config.segment")       # a nested config's field: --segment

Each option keeps the spec field it stands for (``option.spec_field``), which is how a test checks, for
every job kind, that the command line and the spec agree.
"""
from __future__ import annotations

from dataclasses import MISSING
from typing import Any

import click

from config.fields import base_type, field_of, info, item_type


class CommaList(click.ParamType):
    """A list given as one comma-separated value (``--tasks recognition,refusal``), each item checked."""

    name = "list"

    def __init__(self, choices: tuple | None):
        self.choices = choices

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        wrong = [v for v in items if self.choices and v not in self.choices]
        if wrong:
            self.fail(f"{', '.join(wrong)}: not one of {', '.join(self.choices)}", param, ctx)
        return items


def spec_option(spec: type, name: str, *decls: str, comma: bool = False, **overrides: Any):
    """A click option for the field ``name`` (dotted for a nested config) of ``spec``. ``decls``: the
    flag(s) and parameter name when they differ from the field's (``"--with-ocr/--without-ocr", "ocr"``);
    ``comma``: a list field given as one comma-separated value rather than a repeated option;
    ``overrides``: any click.option argument (an ``envvar``, ``required``, a ``type``)."""
    field = info(spec, name)
    dest = name.rsplit(".", 1)[-1]
    flags = list(decls) or [field.flag]
    if not any(d.isidentifier() for d in flags):
        flags.append(dest)
    kwargs: dict[str, Any] = {"help": field.help, "show_default": True}
    kind = base_type(field.type)
    if field.default is not MISSING:
        kwargs["default"] = list(field.default) if isinstance(field.default, (list, tuple)) else field.default
    else:
        kwargs["required"] = True
    if kind is bool:
        if not any("/" in d for d in flags if d.startswith("-")):
            kwargs["is_flag"] = True
    elif kind in (list, tuple) and comma:
        kwargs["type"] = CommaList(field.choices)
        if isinstance(kwargs.get("default"), list):
            kwargs["default"] = ",".join(map(str, kwargs["default"]))
    elif kind in (list, tuple):
        kwargs["multiple"] = True
        if field.choices:
            kwargs["type"] = click.Choice([str(c) for c in field.choices])
        elif item_type(field.type) is int:
            kwargs["type"] = int
        if kwargs.get("default") is None:
            kwargs["default"] = ()
            kwargs["show_default"] = False
    elif field.choices:
        kwargs["type"] = click.Choice([str(c) for c in field.choices])
    elif kind is int:
        kwargs["type"] = click.IntRange(field.min, field.max) if (field.min is not None or field.max is not None) else int
    elif kind is float:
        kwargs["type"] = click.FloatRange(field.min, field.max) if (field.min is not None or field.max is not None) else float
    if kwargs.get("default") is None and "default" in kwargs:
        kwargs["show_default"] = False
    kwargs.update(overrides)

    def attach(f):
        f = click.option(*flags, **kwargs)(f)
        f.__click_params__[-1].spec_field = (spec, name)  # for the agreement test and for saying errors by flag
        return f

    return attach


def flag_of(spec: type, error: Exception, command: click.Command | None = None) -> str:
    """The command line's name for the field an error is about: the option standing for it in
    ``command`` (the current one by default), else the spec's own flag."""
    if command is None:
        current = click.get_current_context(silent=True)
        command = current.command if current else None
    for param in command.params if command else ():
        if getattr(param, "spec_field", (None, None))[1] == error.field:
            return param.opts[0] if param.opts else param.name
    try:
        return info(spec, error.field).flag.split("/", 1)[0]
    except (KeyError, TypeError):
        return error.field


def said(spec: type, exc: ValueError) -> str:
    """A spec's refusal in the command line's terms: ``--batch-size: must be at least 1, not 0``."""
    if field_of(exc):
        return f"{flag_of(spec, exc)}: {exc.message}"
    return str(exc)


def job_params(spec: type, **values: Any) -> dict:
    """The stored parameters of the job ``spec(**values)``; a refusal ends the command with its flag named."""
    from .commands.group import fail

    try:
        return spec(**values).params()
    except ValueError as exc:
        fail(said(spec, exc))
