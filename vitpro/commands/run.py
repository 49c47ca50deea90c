"""`vitpro run RECIPE`: a pipeline of stages from a YAML file (vitpro/recipes.py), and `vitpro stages`:
the stages a recipe may hold and their fields."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .group import cli, echo_table, fail


@cli.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "start", metavar="STAGE", help="Start at this stage, its label or its index (0 is the first): resume a run that stopped there. "
              "The stages before it are not run; later stages still read their outputs.")
@click.option("--dry-run", is_flag=True, help="Print the plan (each stage, its kind, queue and resolved fields) and check every stage; run nothing.")
@click.option("--fields-only", is_flag=True, help="Check only each stage's fields (names, types, choices, bounds), touching no store, file or model: "
              "for a recipe written for another machine (s3:// paths, GPUs). Runs nothing.")
@click.option("--local/--no-local", default=None, help="Start worker processes for the run when no live worker serves a queue it needs "
              "(default: the recipe's settings.local).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set one of the recipe's vars (repeat).")
def run(recipe, start, dry_run, fields_only, local, variables) -> None:
    """Run the stages of a recipe in order: ingest, ocr, generate, sample, clip_score, grounding, aux_stats,
    filter, pilot, snapshot, export, train, eval, ablate.

    \b
    Every stage is checked before the first runs; a stage that fails stops the run and prints the
    command that resumes from it (--from). `vitpro stages` lists the stages, `vitpro stages KIND` their
    fields; docs/guides/recipes.md describes the file.

    \b
    Examples:
      vitpro run examples/demo.yaml --dry-run
      vitpro run examples/catalog.yaml --var listings=/data/abo/listings.jsonl --local
      vitpro run recipe.yaml --from export
    """
    from ..recipes import RecipeError, check_fields, load_recipe, run_recipe

    try:
        loaded = load_recipe(recipe, variables)
        first = loaded.index_of(start) if start is not None else 0
    except RecipeError as exc:
        for message in exc.messages:
            click.secho(f"error: {message}", fg="red", err=True)
        sys.exit(2)
    if fields_only:
        errors = check_fields(loaded, click.echo)
        for message in errors:
            click.secho(f"error: {message}", fg="red", err=True)
        click.echo(f"the fields of {len(loaded.stages)} stage(s): " + (f"{len(errors)} problem(s)" if errors else "valid (files, models and the store not checked)"))
        sys.exit(2 if errors else 0)
    result = run_recipe(loaded, start=first, dry_run=dry_run, local=local)
    sys.exit(result.code)


@cli.command("stages")
@click.argument("kind", required=False)
def stages(kind) -> None:
    """The stages a recipe may hold (`vitpro run`), or one stage's fields with their defaults and help."""
    from ..recipes import describe_kind, field_rows, stage_kinds

    known = stage_kinds()
    if kind is None:
        echo_table([(k, describe_kind(k)) for k in known], ("stage", "what it is"))
        click.echo("fields of one: vitpro stages KIND")
        return
    kind = kind.replace("-", "_")
    if kind not in known:
        fail(f"unknown stage {kind!r}; stages: {', '.join(known)}")
    click.secho(f"{kind}: {describe_kind(kind)}", bold=True)
    echo_table(field_rows(kind), ("field", "type", "default", "help"))
