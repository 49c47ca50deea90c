"""``vitpro snapshot``: a saved filter frozen at one DuckLake version; create, list, show, compare, rename.
Exporting a snapshot for training (``vitpro snapshot export`` / ``verify``) is in exports.py.
"""
from __future__ import annotations

import json

import click

from config.settings import load_settings

from .filters import load_filter
from .group import cli, echo_table, fail, open_engine, open_lake


@cli.group()
def snapshot() -> None:
    """Snapshots: a saved filter frozen at one DuckLake version; export them for training."""


def get_snapshot(name):
    """The snapshot, or the command ends with why not (also the export commands', exports.py)."""
    from curation import snapshots

    try:
        return snapshots.get(open_engine(), name)
    except snapshots.SnapshotError as exc:
        fail(str(exc))


@snapshot.command("create")
@click.argument("name")
@click.option("--filter", "filter_name", required=True, help="The saved filter to freeze.")
def snapshot_create(name, filter_name) -> None:
    """Freeze what a saved filter keeps now: DuckLake version, filter, counts, model and prompt ids, author."""
    from curation import snapshots
    from curation.filters import FilterError

    _, config = load_filter(filter_name)
    try:
        snap = snapshots.create(open_lake(), open_engine(), name=name, filter_name=filter_name, config=config, created_by=load_settings().user)
    except (snapshots.SnapshotError, FilterError) as exc:
        fail(str(exc))
    counts = snap.counts
    click.echo(f"snapshot {name!r}: {counts['kept']} sample(s) kept of {counts['kept'] + counts['dropped']} at DuckLake version {snap.lake_version}")
    click.echo("  per task: " + ", ".join(f"{t} {c['kept']}" for t, c in counts["per_task"].items() if c["kept"]))
    click.echo(f"export it: vitpro snapshot export {name} --format llava --format llamafactory --out exports/{name}")


@snapshot.command("list")
def snapshot_list() -> None:
    """Snapshots, oldest first."""
    from curation import snapshots

    rows = snapshots.list_all(open_engine())
    if not rows:
        click.echo("no snapshots yet: vitpro snapshot create NAME --filter FILTER")
        return
    echo_table([(r.name, r.filter_name or "", r.lake_version, r.counts.get("kept"), r.created_by, f"{r.created_at:%Y-%m-%d %H:%M}") for r in rows],
                ("name", "filter", "version", "samples", "by", "created"))


@snapshot.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def snapshot_show(name, as_json) -> None:
    """Everything a snapshot records."""
    from curation.filters import FilterConfig

    snap = get_snapshot(name)
    record = {"name": snap.name, "filter": snap.filter_name, "filter_config": snap.filter_config, "lake_version": snap.lake_version,
              "counts": snap.counts, "model_ids": snap.model_ids, "prompt_versions": snap.prompt_versions,
              "created_by": snap.created_by, "created_at": str(snap.created_at)}
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    click.secho(f"snapshot {snap.name!r}", bold=True)
    click.echo(f"  made by {snap.created_by} at {snap.created_at:%Y-%m-%d %H:%M}, DuckLake version {snap.lake_version}, filter {snap.filter_name!r}")
    for line in FilterConfig.from_dict(snap.filter_config).describe():
        click.echo(f"  where {line}")
    click.echo(f"  {snap.counts['kept']} kept, {snap.counts['dropped']} dropped; sha256 of the ids {snap.counts['kept_sha256'][:16]}…")
    echo_table([(t, c["kept"], c["dropped"]) for t, c in snap.counts["per_task"].items()], ("task", "kept", "dropped"))
    for m in snap.model_ids:
        click.echo(f"  model {m['metric']}: {m['model_id']}" + (f" [{m['segment']}]" if m.get("segment") else ""))
    for pr in snap.prompt_versions:
        click.echo(f"  prompts {pr['backend']}/{pr['model_id'] or '-'} version {pr['prompt_version']}: {pr['samples']} sample(s)")


@snapshot.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
def snapshot_diff(a, b, as_json) -> None:
    """Samples added and removed per task from snapshot A to snapshot B."""
    from curation import snapshots

    left, right = get_snapshot(a), get_snapshot(b)
    try:
        result = snapshots.diff(open_lake(), left, right)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{a} (version {left.lake_version}) -> {b} (version {right.lake_version})")
    rows = [(t, f"+{c['added']}", f"-{c['removed']}", c["unchanged"]) for t, c in result.items()]
    totals = [sum(c[k] for c in result.values()) for k in ("added", "removed", "unchanged")]
    echo_table(rows + [("total", f"+{totals[0]}", f"-{totals[1]}", totals[2])], ("task", "added", "removed", "unchanged"))


@snapshot.command("backfill")
def snapshot_backfill() -> None:
    """List the samples of every snapshot made before snapshots listed them (each rebuilt from its filter
    once, checked against its recorded hash). Safe to run again; a snapshot read first is listed then anyway."""
    from curation import snapshots

    def report(snap, result) -> None:
        if isinstance(result, snapshots.SnapshotError):
            click.echo(f"snapshot {snap.name!r}: {result}", err=True)
        else:
            click.echo(f"snapshot {snap.name!r}: listed {result} sample(s) of DuckLake version {snap.lake_version}")

    try:
        done = snapshots.backfill_members(open_lake(), open_engine(), progress=report)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    click.echo(f"{len(done)} snapshot(s) listed" if done else "every snapshot lists its samples already")



@snapshot.command("rename")
@click.argument("old")
@click.argument("new")
def snapshot_rename(old, new) -> None:
    """Rename a snapshot; its export folder $VITPRO_HOME/exports/OLD moves to .../NEW with it (the
    manifests inside keep the name they were exported under)."""
    from curation import snapshots

    exports_root = load_settings().home / "exports"
    try:
        snap = snapshots.rename(open_engine(), old, new, exports_root=exports_root)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    moved = (exports_root / snap.name).exists()
    click.echo(f"snapshot {old!r} is now {snap.name!r}" + (f"; its exports are in {exports_root / snap.name}" if moved else ""))
