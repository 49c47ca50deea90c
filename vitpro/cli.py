"""The ``vitpro`` command line: everything a user can do without the web app.

Typical session::

    vitpro worker --queues cpu &          # one or more workers (any machine that sees the store)
    vitpro ingest listings.jsonl          # ABO listings: no mapping needed
    vitpro ingest reviews.csv --kind feedback --map feedback_text=Summary,Text --pii ProfileName=NAME
    vitpro ocr
    vitpro status

Long commands wait for their job with a progress bar (``--no-wait`` returns at once); ``--local`` starts
a worker for the length of the command when none is running.
"""
from __future__ import annotations

import importlib
import pkgutil

from . import commands
from .commands.group import cli


def _register_commands() -> None:
    """Every module of vitpro/commands adds its commands to the group: a new area is a new module."""
    for info in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{info.name}")


_register_commands()


def main() -> None:
    cli(prog_name="vitpro")


if __name__ == "__main__":
    main()
