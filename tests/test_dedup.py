"""Near-duplicate images in the store (issue 28): the dedup job on real ABO photos relisted as new products with
re-encoded, resized, cropped and byte-identical copies; the groups as `dedup show --json` prints them; the
dup_* stats and the filter that keeps one sample per group; a photo that cannot be hashed."""
from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image, ImageEnhance

from config.settings import load_settings
from curation.filters import FilterConfig, stats_for
from db.reads import dup_reads
from db.store import open_store
from jobs.dedup import DedupJob
from jobs.generate import GenerateJob
from jobs.ingest import IngestJob

from .test_generation import _run_job  # plan, units and finalize of one job, here and in order

ABO = {"B074M5HPBD": "9ea6992d", "B0799CK52K": "25ffa37c", "B07GTFSCHB": "31afd5f5"}


def _variant(path, kind: str) -> bytes:
    """The photo as a shop would relist it: re-encoded, resized, cropped, re-toned."""
    image = Image.open(path).convert("RGB")
    if kind == "resized":
        image = image.resize((image.width * 2 // 3, image.height * 2 // 3))
    elif kind == "cropped":
        w, h = image.size
        image = image.crop((w * 3 // 100, h * 3 // 100, w - w * 2 // 100, h - h * 2 // 100))
    elif kind == "darker":
        image = ImageEnhance.Brightness(image).enhance(0.95)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60)
    return out.getvalue()


def _pattern(seed: int) -> Image.Image:
    """A photo of nothing in particular, unlike any other (a plain one would hash like every plain one: no gradients)."""
    import numpy as np

    noise = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize((400, 300), Image.BILINEAR)


def _relisted_store(tmp_path, shared_data):
    """The three ABO listings, plus a second source relisting two of them under new ids with copies of their
    photos (a near-duplicate each, and one byte-identical), and a product of its own with a photo of its own."""
    root = tmp_path / "abo"
    shutil.copytree(shared_data / "abo-samples", root)
    listings = [json.loads(line) for line in (root / "listings.jsonl").read_text().splitlines() if line.strip()]
    by_id = {x["item_id"]: x for x in listings}
    (root / "relisted").mkdir()
    made = {}
    for new_id, (old_id, kind) in {"RELIST-A": ("B074M5HPBD", "resized"), "RELIST-B": ("B0799CK52K", "cropped"),
                                   "RELIST-C": ("B07GTFSCHB", "darker")}.items():
        src = root / "images" / old_id / f"{ABO[old_id]}.jpg"
        (root / "relisted" / f"{new_id}.jpg").write_bytes(_variant(src, kind))
        made[new_id] = [f"relisted/{new_id}.jpg"]
    # byte-identical: the same file under a second product
    shutil.copy(root / "images" / "B0799CK52K" / "528c608a.jpg", root / "relisted" / "RELIST-B-2.jpg")
    made["RELIST-B"].append("relisted/RELIST-B-2.jpg")
    _pattern(1).save(root / "relisted" / "OWN.jpg", quality=90)
    rows = [dict(by_id[old], item_id=new, images=made[new]) for new, old in (("RELIST-A", "B074M5HPBD"), ("RELIST-B", "B0799CK52K"),
                                                                             ("RELIST-C", "B07GTFSCHB"))]
    rows.append(dict(by_id["B074M5HPBD"], item_id="OWN-1", images=["relisted/OWN.jpg"]))
    (root / "relisted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("listings.jsonl", "relisted.jsonl"):
        params = IngestJob(source=str(root / name), format=None, mapping=None, name=None, image_root=None, redact=True).params()
        assert _run_job("ingest", params).status == "succeeded"
    return open_store(load_settings().store)


def _members(groups):
    return [sorted((m["source"], m["external_id"]) for m in g["members"]) for g in groups]


def test_relisted_photos_group_with_their_originals_and_one_sample_per_group_is_kept(home, shared_data, tmp_path, cli):
    lake = _relisted_store(tmp_path, shared_data)
    assert _run_job("generate", GenerateJob(backend="template").params()).status == "succeeded"
    job = _run_job("dedup", DedupJob(rank_by="").params())
    assert job.status == "succeeded", job.error
    images = lake.scalar("SELECT count(DISTINCT sha256) FROM images")
    assert job.counts["images_to_hash"] == images == lake.scalar("SELECT count(*) FROM image_hashes WHERE method = 'dhash-v1'")
    assert job.counts["grouping"] == "dhash:10" and job.counts["images_not_hashed"] == 0

    groups = dup_reads.groups(lake, "dhash:10")
    found = _members(groups)
    # each relisted photo with the photo it was made from, the byte-identical copy with its original; nothing else joins
    for new, old in (("RELIST-A", "B074M5HPBD"), ("RELIST-B", "B0799CK52K"), ("RELIST-C", "B07GTFSCHB")):
        assert any(("relisted", new) in g and ("listings", old) in g for g in found), (new, found)
    assert not any(("relisted", "OWN-1") in g for g in found)
    byte_identical = lake.scalar("SELECT sha256 FROM images i JOIN items it USING (item_id) WHERE it.external_id = 'RELIST-B' AND i.position = 1")
    assert [m["external_id"] for g in groups for m in g["members"] if m["image_sha256"] == byte_identical] == ["B0799CK52K", "RELIST-B"]
    assert all(len(g["members"]) >= 2 for g in groups) and [g["group"] for g in groups] == list(range(1, len(groups) + 1))

    # the command prints the same groups in the JSON shape
    shown = json.loads(cli("dedup", "show", "--json", check=True).stdout)
    assert shown["method"] == "dhash" and shown["threshold"] == 10 and shown["groups"] == groups
    assert set(shown["groups"][0]["members"][0]) == {"item_id", "source", "external_id", "image_sha256"}
    assert json.loads(cli("dedup", "show", "--json", "--limit", "1", check=True).stdout)["groups"] == groups[:1]
    words = cli("dedup", "show", check=True).stdout
    assert f"dhash:10: {len(groups)} group(s) of near-duplicate images" in words and "RELIST-A" in words
    assert cli("dedup", "show", "--grouping", "phash:3").returncode == 2

    # stats: every image has a group and its size; a sample's rank is among the samples of its task and photo group that
    # say the same thing (here: relisted copies whose template picked the same question and answer as the original's)
    sizes = dict(lake.fetchall("SELECT subject_id, value FROM scores WHERE metric = 'dup_size' AND model_id = 'dhash:10'"))
    assert len(sizes) == lake.scalar("SELECT count(*) FROM images") and set(sizes.values()) >= {1.0, 2.0}
    from curation.text_dups import normalise

    ranks = lake.fetchall(
        "SELECT s.task, g.value, s.question, s.answer, r.value FROM samples s JOIN scores r ON r.subject_id = s.sample_id AND r.metric = 'dup_rank' "
        "JOIN scores g ON g.subject_id = json_extract_string(s.image_ids, '$[0]') AND g.metric = 'dup_group' ORDER BY r.value")
    per_class: dict = {}
    for task, group, question, answer, rank in ranks:
        per_class.setdefault((task, group, normalise(question), normalise(answer)), []).append(rank)
    assert all(r == list(range(1, len(r) + 1)) for r in per_class.values())
    said_twice = [k for k, r in per_class.items() if len(r) >= 2]
    assert said_twice and all(k[1] <= len(groups) for k in said_twice)  # only about near-duplicate photos
    assert job.counts["sample_groups"] == len(said_twice)
    # two different questions about one photo are not duplicates: both rank 1
    assert any(sum(1 for k in per_class if k[:2] == (task, group)) >= 2 for task, group, *_ in per_class)

    # the filter keeps one sample per group of samples that say the same thing
    config = FilterConfig.from_dict({"conditions": [{"metric": "dup_rank", "op": "==", "value": 1}]})
    report = stats_for(lake, config).report(config)
    assert report.kept == len(per_class)
    assert report.kept + report.dropped == lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")

    # a whole group at once: tag it, then exclude every sample but each task's best of every group
    first = groups[0]
    in_first = {s for (s,) in lake.fetchall(
        "SELECT DISTINCT s.sample_id FROM samples s, unnest(CAST(s.image_ids AS VARCHAR[])) u(image_id) JOIN images i USING (image_id) "
        "WHERE i.sha256 IN (SELECT unnest(?))", [[m["image_sha256"] for m in first["members"]]])}
    out = cli("samples", "tag", "--tag", "relisted", "--where", f"dup_group == {first['group']}", "--yes", check=True).stdout
    tagged = {s for (s,) in lake.fetchall("SELECT DISTINCT sample_id FROM sample_tags WHERE tag = 'relisted'")}
    assert tagged == in_first and str(len(in_first)) in out
    cli("samples", "exclude", "--where", "dup_rank > 1", "--reason", "near-duplicate", "--yes", check=True)
    report = stats_for(lake, FilterConfig([])).report(FilterConfig([]))
    assert report.excluded == sum(len(r) - 1 for r in per_class.values())


def test_a_photo_that_cannot_be_hashed_is_an_error_row_and_the_rest_is_grouped(home, shared_data, tmp_path, cli):
    lake = _relisted_store(tmp_path, shared_data)
    sha, blob = lake.fetchone("SELECT sha256, blob_path FROM images i JOIN items it USING (item_id) WHERE it.external_id = 'OWN-1'")
    (home / "blobs" / blob).write_bytes(b"\xff\xd8\xff\xe0 the disk went bad")
    job = _run_job("dedup", DedupJob(rank_by="").params())
    assert job.status == "succeeded" and job.counts["images_not_hashed"] == 1
    assert lake.fetchone("SELECT stage, code, subject FROM errors WHERE stage = 'dedup'") == ("dedup", "truncated_image", sha)
    flags = lake.fetchone("SELECT value, flags FROM scores s JOIN images i ON i.image_id = s.subject_id "
                          "WHERE s.metric = 'dup_group' AND i.sha256 = ?", [sha])
    assert flags[0] is None and json.loads(flags[1]) == {"error": "truncated_image"}
    assert len(dup_reads.groups(lake, "dhash:10")) >= 3
    # what a user sees: the error under its stage, and the groups in the status
    assert f"[dedup/truncated_image] {sha[:40]}" in cli("errors", "--stage", "dedup", check=True).stdout
    status = cli("status", check=True).stdout
    assert f"dedup     {len(dup_reads.groups(lake, 'dhash:10'))} group(s) of near-duplicate images" in status and "by dhash:10" in status
    # a second run hashes only what is missing and replaces the grouping
    again = _run_job("dedup", DedupJob(rank_by="").params())
    assert again.counts["images_to_hash"] == 1 and lake.scalar("SELECT count(*) FROM scores WHERE metric = 'dup_group'") == \
        lake.scalar("SELECT count(*) FROM images")


def test_the_spec_refuses_a_stat_that_cannot_rank_samples():
    from config.fields import FieldError

    with pytest.raises(FieldError) as found:
        DedupJob(rank_by="ocr_chars").resolve()
    assert found.value.field == "rank_by" and "image stat" in str(found.value)
    with pytest.raises(FieldError, match="unknown stat 'nope'"):
        DedupJob(rank_by="nope").resolve()
    assert DedupJob(method="dhash", threshold=10).resolve().grouping == "dhash:10"


# ---- held-out splits by group, and leak reports --------------------------------------------------------------------------------
def _snapshot(lake, name="snap"):
    from curation import snapshots
    from db.app.engine import write_engine

    engine = write_engine(load_settings().app_url)
    snapshots.create(lake, engine, name=name, filter_name=None, config=FilterConfig([]), created_by="tester")
    return engine, snapshots.members_sql(lake, snapshots.get(engine, name)), snapshots.get(engine, name).lake_version


def _crossing_seed(lake, engine, holdout):
    """A seed whose split by product puts a relisted product and its original on two sides (found, not assumed)."""
    from trainer import leaks

    for seed in range(50):
        report = leaks.split_leaks(lake, engine, "snap", settings=leaks.SplitSettings(holdout=holdout, seed=seed, by="product"))
        if report["leaks"]:
            return seed, report
    raise AssertionError("no seed in 50 splits a group by product")


def test_splits_by_group_never_put_near_duplicates_on_both_sides_and_the_leak_report_shows_what_a_product_split_did(home, shared_data, tmp_path, cli):
    from curation import dup_splits
    from trainer import leaks, snapshot_set
    from trainer.config import TrainConfig

    lake = _relisted_store(tmp_path, shared_data)
    assert _run_job("generate", GenerateJob(backend="template").params()).status == "succeeded"
    assert _run_job("dedup", DedupJob(rank_by="").params()).status == "succeeded"
    engine, members, version = _snapshot(lake)
    seed, by_product = _crossing_seed(lake, engine, 0.5)
    # the old split let a group through: its held-out and training items are named
    leak = by_product["leaks"][0]
    assert leak["held_out"] and leak["training"] and by_product["held_out_samples_leaking"] >= 1
    ids = {x["external_id"] for x in leak["held_out"] + leak["training"]}
    assert any(i.startswith("RELIST-") for i in ids) and any(not i.startswith("RELIST-") for i in ids)

    # the split by group (what training does now) on the same seed: no group crosses
    by_group = leaks.split_leaks(lake, engine, "snap", settings=leaks.SplitSettings(holdout=0.5, seed=seed))
    assert by_group["leaks"] == [] and by_group["held_out_samples"] + by_group["training_samples"] == by_product["held_out_samples"] + by_product["training_samples"]

    # and the trainer's own split (the same basis a run records) keeps every group on one side
    basis = snapshot_set.split_basis(lake)
    assert basis["by"] == "dup_group" and basis["grouping"] == "dhash:10"
    parts = snapshot_set.split(lake, members, version, TrainConfig(holdout=0.5, seed=seed), basis)
    training = set(parts.ids)
    groups = dup_reads.sample_groups(lake, members, "dhash:10")
    sides = {s: s not in training for s in groups}
    assert groups and dup_splits.crossings(sides, groups) == {}
    assert parts.held_out > 0 and training

    # the command line: the same report, in words and as JSON
    out = cli("snapshot", "leaks", "snap", "--by", "product", "--holdout", "0.5", "--seed", str(seed), check=True).stdout
    assert f"in {len(by_product['leaks'])} group(s) with training photos" in out and f"group {leak['group']}:" in out
    shown = json.loads(cli("snapshot", "leaks", "snap", "--holdout", "0.5", "--seed", str(seed), "--json", check=True).stdout)
    assert shown["leaks"] == [] and shown["split"] == "dup_group"


def test_split_keys_tie_products_through_groups_and_leave_the_rest_as_they_were():
    from curation.dup_splits import crossings, split_keys

    keys = split_keys([("s1", "P1", [7]), ("s2", "P2", [7, 9]), ("s3", "P3", [9]), ("s4", "P4", []), ("s5", "P1", [])])
    assert keys == {"s1": "P1", "s2": "P1", "s3": "P1", "s4": "P4", "s5": "P1"}  # a chain P1-7-P2-9-P3 is one key
    assert crossings({"a": True, "b": False, "c": True}, {"a": [1], "b": [1, 2], "c": [2, 3]}) == {
        1: {"held_out": ["a"], "training": ["b"]}, 2: {"held_out": ["c"], "training": ["b"]}}


def test_a_benchmark_folder_is_checked_against_the_training_photos_and_adapters_trained_before_are_flagged(home, shared_data, tmp_path, cli):
    from db.app import training
    from trainer import leaks

    lake = _relisted_store(tmp_path, shared_data)
    assert _run_job("generate", GenerateJob(backend="template").params()).status == "succeeded"
    assert _run_job("dedup", DedupJob(rank_by="").params()).status == "succeeded"
    engine, members, version = _snapshot(lake)
    report = leaks.split_leaks(lake, engine, "snap", settings=leaks.SplitSettings(holdout=0.0))  # everything on the training side
    assert report["held_out_samples"] == 0

    bench = tmp_path / "benchmark"
    bench.mkdir()
    (bench / "q1.jpg").write_bytes(_variant(shared_data / "abo-samples" / "images" / "B0799CK52K" / "a8a14cd2.jpg", "resized"))
    _pattern(2).save(bench / "unrelated.png")
    (bench / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 half a file")
    (bench / "notes.txt").write_text("not an image")
    found = leaks.folder_leaks(lake, engine, "snap", bench, settings=leaks.SplitSettings(holdout=0.0))
    assert found["folder_images"] == 3 and [e["file"] for e in found["folder_errors"]] == ["broken.jpg"]
    assert [(x["files"], [i["external_id"] for i in x["training"]]) for x in found["leaks"]] == [(["q1.jpg"], ["B0799CK52K"])]
    out = cli("snapshot", "leaks", "snap", "--against", str(bench), "--holdout", "0", check=True)
    assert "q1.jpg: in training listings/B0799CK52K" in out.stdout and "could not hash broken.jpg" in out.stderr

    # adapters: one trained before splits by group (no split recorded) is possibly leaking, one split by group is not
    for name, meta in (("old-run", {"config": {}}), ("new-run", {"config": {}, "split": {"by": "dup_group", "grouping": "dhash:10", "version": version}})):
        out_dir = tmp_path / "runs" / name
        (out_dir / "adapter").mkdir(parents=True)
        (out_dir / "adapter" / "training_config.json").write_text(json.dumps(meta))
        training.create_run(engine, name=name, snapshot="snap", base_model="m", config={}, out_dir=str(out_dir), created_by="t")
    flagged = {a["run"]: a["possibly_leaking"] for a in leaks.trained_adapters(engine, "snap")}
    assert flagged == {"old-run": True, "new-run": False}
    assert "adapter of run 'old-run': possibly leaking (trained before" in cli("snapshot", "leaks", "snap", check=True).stdout
