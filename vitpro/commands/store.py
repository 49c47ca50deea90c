"""`vitpro init`: create the store."""
from __future__ import annotations

import click

from config.settings import load_settings

from .group import cli


# ---- store -----------------------------------------------------------------------------------------------
@cli.command()
def init() -> None:
    """Create the store (DuckLake tables and app tables). Safe to run again."""
    from db.store import init_store

    s = load_settings()
    info = init_store(s.store)
    for key, value in s.describe().items():
        click.echo(f"{key:>15}: {value}")
    click.echo(
        f"lake migrations applied now: {info.lake_migrations_applied or 'none (up to date)'}; app tables at revision {info.app_revision}"
    )
