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


@snapshot.command("leaks")
@click.argument("name")
@click.option("--against", "folder", type=click.Path(file_okay=False), help="A folder of images (an external benchmark): list the training "
              "items whose photos near-duplicate one of them, instead of the held-out ones.")
@click.option("--by", type=click.Choice(["dup_group", "product"]), default="dup_group", show_default=True,
              help="The split to check: by near-duplicate group (how runs split now), or by product (how adapters trained before did).")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True, help="Share of products held out, as the run's.")
@click.option("--seed", type=int, default=0, show_default=True, help="The run's seed.")
@click.option("--grouping", help="Which near-duplicate grouping (METHOD:THRESHOLD); default: the newest.")
@click.option("--json", "as_json", is_flag=True)
def snapshot_leaks(name, folder, by, holdout, seed, grouping, as_json) -> None:
    """Held-out items whose photos near-duplicate training photos (`vitpro dedup images` first), or with
    --against DIR, training items whose photos near-duplicate an image of DIR; and the snapshot's adapters
    whose split may leak (trained before splits by group)."""
    from tqdm import tqdm

    from curation import snapshots
    from trainer import leaks

    get_snapshot(name)
    settings = leaks.SplitSettings(holdout=holdout, seed=seed, by=by)
    try:
        if folder is None:
            report = leaks.split_leaks(open_lake(), open_engine(), name, settings=settings, grouping=grouping)
        else:
            files = leaks.folder_images(folder)
            with tqdm(total=len(files), unit="image", desc="hashing", disable=as_json or not files) as bar:
                report = leaks.folder_leaks(open_lake(), open_engine(), name, folder, settings=settings, grouping=grouping,
                                            progress=lambda done: bar.update(done - bar.n))
    except (leaks.LeakError, snapshots.SnapshotError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    split = f"split by {'near-duplicate group' if by == 'dup_group' else 'product'}, {holdout:.0%} held out, seed {seed}; {report['grouping']}"
    item = lambda x: f"{x['source']}/{x['external_id']}" if x["external_id"] else x["item_id"]  # noqa: E731
    if folder is None:
        click.echo(f"snapshot {name!r} ({split}): {report['held_out_samples']} held-out and {report['training_samples']} training samples; "
                   f"{report['held_out_samples_leaking']} held-out sample(s) in {len(report['leaks'])} group(s) with training photos")
        for leak in report["leaks"]:
            click.echo(f"  group {leak['group']}: held out {', '.join(map(item, leak['held_out']))}; in training {', '.join(map(item, leak['training']))}")
    else:
        click.echo(f"snapshot {name!r} against {folder} ({split}): {report['folder_images']} image(s), {len(report['leaks'])} near-duplicate(s) "
                   f"of training photos; {report['training_images_not_hashed']} training image(s) without a hash")
        for leak in report["leaks"]:
            click.echo(f"  {', '.join(leak['files'])}: in training {', '.join(map(item, leak['training']))}")
        for err in report["folder_errors"]:
            click.echo(f"  could not hash {err['file']}: {err['message']}", err=True)
    for adapter in report.get("adapters", ()):
        if adapter["possibly_leaking"]:
            click.secho(f"  adapter of run {adapter['run']!r}: possibly leaking ({adapter['why']}); "
                        f"`vitpro snapshot leaks {name} --by product` lists what its split let through", fg="yellow")


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
