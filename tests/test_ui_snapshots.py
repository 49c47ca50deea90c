"""The Snapshots page under AppTest on a real store: the typed name survives a change of filter, renames
(export folder included), zip downloads of exports with a size cap, exclusions in the counts, and admin
forms that annotators do not see (while the server still refuses a session that claims more)."""
from __future__ import annotations

import io
import zipfile

from config.settings import load_settings
from curation import snapshots
from curation.exports import MANIFEST, verify_export, write_export
from curation.filters import FilterConfig
from db.app import saved_filters
from db.app.users import SignedIn
from db.lake import exclusions
from ui import downloads

from .test_ui_pages import ANNA, page, texts, ui_store  # noqa: F401  (ui_store: a fixture, used by name)

ADMIN_FORMS = ("Create snapshot", "Rename snapshot", "Export")


def _by_label(widgets, label):
    return next(w for w in widgets if w.label == label)


def _buttons(at) -> list[str]:
    return [b.label for b in at.button]


def _download_labels(at) -> list[str]:
    return [node.proto.label for node in at.get("download_button")]


def _export(lake, snap, root, formats=("llava", "parquet")):
    samples, sources = snapshots.export_samples(lake, snap, load_settings().blob_path)
    for fmt in formats:
        write_export(root / snap.name / fmt, fmt, samples, sources=sources, meta=snapshots.manifest_meta(snap), dataset_name=snap.name)


def test_create_keeps_the_typed_name_after_the_filter_changed(ui_store):
    home, lake, engine = ui_store
    saved_filters.save(engine, "other-filter", saved_filters.get(engine, "ui-filter").config, "admin")
    at = page("snapshots")
    assert not at.exception
    picker = _by_label(at.selectbox, "Saved filter")
    other = next(o for o in picker.options if o != picker.value)  # the filter not shown first
    picker.select(other)
    _by_label(at.text_input, "Snapshot name").input("typed-name")
    _by_label(at.button, "Create snapshot").click().run()  # once
    assert not at.exception
    snap = snapshots.get(engine, "typed-name")
    assert snap.filter_name == other and "snapshot 'typed-name'" in texts(at)
    # left blank: the filter's name and the store version
    _by_label(at.text_input, "Snapshot name").input("")
    _by_label(at.button, "Create snapshot").click().run()
    blank = snapshots.list_all(engine)[-1]  # a version later than the first: the first's member list was a commit
    assert blank.name == f"{other}-v{blank.lake_version}" and blank.lake_version > snap.lake_version
    # a name that cannot be a folder is refused in the user's terms
    _by_label(at.text_input, "Snapshot name").input("a/b")
    _by_label(at.button, "Create snapshot").click().run()
    assert "no slashes" in texts(at) and len(snapshots.list_all(engine)) == 2


def test_rename_on_the_page_moves_the_exports_and_refuses_taken_names(ui_store):
    home, lake, engine = ui_store
    config = saved_filters.get(engine, "ui-filter").config
    first, second = (snapshots.create(lake, engine, name=n, filter_name="ui-filter", config=FilterConfig.from_dict(config), created_by="admin").name
                     for n in ("r-one", "r-two"))
    (home / "exports" / first / "llava").mkdir(parents=True)
    (home / "exports" / first / "llava" / MANIFEST).write_text('{"snapshot": "%s", "records": 0}' % first)

    at = page("snapshots", manifest_snap=first, diff_a=first)
    _by_label(at.selectbox, "Snapshot").select(first)
    _by_label(at.text_input, "New name").input(second)
    _by_label(at.button, "Rename snapshot").click().run()
    assert f"a snapshot named {second!r} exists already" in texts(at)
    _by_label(at.text_input, "New name").input("renamed-on-page")
    _by_label(at.button, "Rename snapshot").click().run()
    assert not at.exception, at.exception
    assert f"snapshot {first!r} is now 'renamed-on-page'" in texts(at)
    assert (home / "exports" / "renamed-on-page" / "llava" / MANIFEST).is_file() and not (home / "exports" / first).exists()
    assert "renamed-on-page" in [x.name for x in snapshots.list_all(engine)] and first not in [x.name for x in snapshots.list_all(engine)]
    at.run()  # the next rerun: pickers that held the old name start afresh
    names = [x.name for x in snapshots.list_all(engine)]
    assert not at.exception and _by_label(at.selectbox, "From").value in names and _by_label(at.selectbox, "Snapshot").value in names


def test_annotators_see_no_admin_form_and_a_claimed_role_is_still_refused(ui_store):
    home, lake, engine = ui_store
    before = [x.name for x in snapshots.list_all(engine)]
    anna = page("snapshots", who=ANNA)
    assert not anna.exception
    assert not set(ADMIN_FORMS) & set(_buttons(anna)) and "admins only" not in texts(anna)
    assert not [w for w in anna.text_input if w.label in ("Snapshot name", "New name")]
    # a session that claims admin sees the forms (allowed() is a courtesy) but the server checks the store
    liar = page("snapshots", who=SignedIn("anna", "admin"))
    assert set(ADMIN_FORMS) <= set(_buttons(liar))
    _by_label(liar.text_input, "New name").input("stolen")
    _by_label(liar.button, "Rename snapshot").click().run()
    assert "refused: anna is annotator" in texts(liar)
    _by_label(liar.button, "Create snapshot").click().run()
    assert "refused: anna is annotator" in texts(liar)
    assert [x.name for x in snapshots.list_all(engine)] == before


def test_exports_download_as_zips_under_a_size_cap(ui_store, tmp_path, monkeypatch):
    home, lake, engine = ui_store
    snap = snapshots.list_all(engine)[-1]
    _export(lake, snap, home / "exports")
    at = page("snapshots", manifest_snap=snap.name)
    assert not at.exception
    labels = _download_labels(at)
    assert labels.count("Download manifest") == 2 and labels.count("Download zip") == 2

    # the zip the button serves unpacks to a valid export (relative image paths resolve), byte for byte
    folder = home / "exports" / snap.name / "llava"
    data = downloads.zip_folder(folder, root_name=f"{snap.name}-llava")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert all(n.startswith(f"{snap.name}-llava/") for n in names)
        assert zf.read(f"{snap.name}-llava/{MANIFEST}") == (folder / MANIFEST).read_bytes()
        zf.extractall(tmp_path / "unzipped")
    manifest = verify_export(tmp_path / "unzipped" / f"{snap.name}-llava")
    assert manifest["records"] == snap.counts["kept"] and len(names) == len([p for p in folder.rglob("*") if p.is_file()])

    # over the cap: no zip, the folder's path instead
    monkeypatch.setenv("VITPRO_ZIP_MAX_MB", "0.0001")
    small = page("snapshots", manifest_snap=snap.name)
    assert "Download zip" not in _download_labels(small) and _download_labels(small).count("Download manifest") == 2
    assert "too large to download as a zip here" in texts(small) and str(folder) in texts(small)
    monkeypatch.delenv("VITPRO_ZIP_MAX_MB")
    # annotators read the manifest; the data itself is an export (admins)
    anna = page("snapshots", who=ANNA, manifest_snap=snap.name)
    assert _download_labels(anna) == ["Download manifest", "Download manifest"]


def test_page_counts_exclusions_and_new_snapshots_leave_them_out(ui_store):
    home, lake, engine = ui_store
    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    base = snapshots.create(lake, engine, name="before-exclusion", filter_name="ui-filter", config=config, created_by="admin")
    victim = snapshots.kept(lake, base)[0][0]
    exclusions.exclude(lake, [victim], reason="wrong answer", by="admin")
    try:
        at = page("snapshots")
        assert "1 sample(s) are excluded now" in texts(at)
        _by_label(at.text_input, "Snapshot name").input("after-exclusion")
        _by_label(at.button, "Create snapshot").click().run()
        assert "(1 excluded samples left out)" in texts(at)
        after = snapshots.get(engine, "after-exclusion")
        assert after.counts["kept"] == base.counts["kept"] - 1 and after.counts["excluded"] == 1
        rows = at.dataframe[0].value
        assert rows.set_index("name").loc["after-exclusion", "excluded"] == 1 and rows.set_index("name").loc["before-exclusion", "excluded"] == 0
    finally:
        exclusions.restore(lake, [victim], by="admin")


def test_the_leak_check_says_what_to_run_then_shows_the_split_and_flags_an_old_adapter(ui_store, tmp_path):
    import json

    from db.app import training
    from jobs.dedup import DedupJob

    from .test_generation import _run_job

    home, lake, engine = ui_store
    snapshots.create(lake, engine, name="leak-snap", filter_name=None, config=FilterConfig([]), created_by="admin")
    at = page("snapshots")
    assert _by_label(at.selectbox, "Snapshot").value == "leak-snap"  # the newest, by default
    _by_label(at.button, "Check for leaks").click().run()
    assert not at.exception and "run `vitpro dedup images` first" in texts(at)

    assert _run_job("dedup", DedupJob(rank_by="").params()).status == "succeeded"
    out_dir = tmp_path / "old-run"
    (out_dir / "adapter").mkdir(parents=True)
    (out_dir / "adapter" / "training_config.json").write_text(json.dumps({"config": {}}))  # trained before splits by group
    training.create_run(engine, name="old-run", snapshot="leak-snap", base_model="m", config={}, out_dir=str(out_dir), created_by="admin")
    at = page("snapshots")
    _by_label(at.button, "Check for leaks").click().run()
    assert not at.exception
    shown = texts(at)
    assert "no near-duplicate group crosses this split" in shown
    assert "adapter of run 'old-run': possibly leaking (trained before held-out products were split by near-duplicate group)" in shown
    assert [m.label for m in at.metric] == ["held-out samples", "held-out samples with a training near-duplicate", "groups crossing the split"]
