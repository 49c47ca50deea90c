"""`vitpro filter`, `vitpro pilot` and `vitpro snapshot` end to end (in this process, click's CliRunner), the
export running as a job through the broker on the worker `--local` starts (in this process too, by the
workers' own task: tests/inprocess.py), and the command line's refusals (exit code 2, a message, nothing
changed)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from config.settings import load_settings
from db.app import pilots
from db.app.engine import write_engine

from .curation_store import add_scores, ingest_and_generate


@pytest.fixture
def store(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "demo")
    add_scores(lake)
    return lake


def test_filter_pilot_snapshot_export_from_the_command_line(store, cli, tmp_path):
    run = cli
    saved = run("filter", "save", "good", "--where", "vis_attn >= p25", "--where", "clip_score >= p20", "--hist", check=True).stdout
    assert "saved filter 'good'" in saved and "per task:" in saved and "per category:" in saved and "kept |" in saved
    shown = json.loads(run("filter", "show", "good", "--json", check=True).stdout)
    total = store.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    assert shown["kept"] + shown["dropped"] == total and 0 < shown["kept"] < total
    assert sum(k for _, k, _ in shown["per_task"]) == shown["kept"]
    assert [c["model_id"] for c in shown["config"]["conditions"]] == ["vlm-a", "clip-a"]
    dry = run("filter", "save", "strict", "--where", "vis_attn >= p90", "--dry-run", check=True).stdout
    assert "dry run: nothing saved" in dry and "strict" not in run("filter", "list", check=True).stdout
    assert "good" in run("filter", "list", check=True).stdout

    created = run("pilot", "create", "p1", "--size", "30", "--seed", "3", check=True).stdout
    assert "pilot 'p1': 30 sample(s)" in created and "per decile:" in created
    # the labelling loop: grounded, not grounded with words and a note, help, skip, back (relabel), quit
    out = run("pilot", "label", "p1", "--annotator", "ann", input="g\nn dented lid // lid looks fine\nwhat\ns\nb\ng\nq\n", check=True).stdout
    assert "question" in out and "VisAttnScore" in out and "image [1]" in out and "4 label(s) saved" in out
    engine = write_engine(load_settings().app_url)
    pilot = pilots.get(engine, "p1")
    labels = {(lab.sample_id, lab.label, tuple(lab.ungrounded_words), lab.note) for lab in pilots.labels(engine, pilot.id, "ann")}
    order = [x.sample_id for x in pilots.samples(engine, pilot.id)]
    assert labels == {(order[0], "grounded", (), None), (order[1], "not_grounded", ("dented", "lid"), "lid looks fine"), (order[2], "grounded", (), None)}
    resumed = run("pilot", "label", "p1", "--annotator", "ann", input="", check=True).stdout
    assert "3 of 30 labelled by ann; 27 to go" in resumed

    # a second annotator by CSV, then the first one's remaining samples
    rows = "sample_id,label,annotator\n" + "".join(f"{sid},{'grounded' if k % 3 else 'not_grounded'},bob\n" for k, sid in enumerate(order))
    (tmp_path / "bob.csv").write_text(rows)
    assert "imported 30 label(s) from bob" in run("pilot", "import", "p1", str(tmp_path / "bob.csv"), check=True).stdout
    rows = "sample_id,label\n" + "".join(f"{sid},{'not_grounded' if k % 4 == 0 else 'grounded'}\n" for k, sid in enumerate(order[3:]))
    (tmp_path / "ann.csv").write_text(rows)
    run("pilot", "import", "p1", str(tmp_path / "ann.csv"), "--annotator", "ann", check=True)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"sample_id,label,annotator\n{order[0]},perhaps,cy\n")
    refused = run("pilot", "import", "p1", str(bad))
    assert refused.returncode == 2 and "nothing imported: row 2: label 'perhaps'" in refused.stderr
    exported = run("pilot", "export", "p1", check=True).stdout
    assert len(list(csv.DictReader(io.StringIO(exported)))) == 60

    report = json.loads(run("pilot", "report", "p1", "--json", "--roc", str(tmp_path / "roc.svg"), check=True).stdout)
    assert report["filter"] == "good" and report["annotators"] == ["ann", "bob"] and "ann|bob" in report["kappa"]
    assert set(report["scores"]) == {"vis_attn", "clip_score"} and 0 <= report["scores"]["vis_attn"]["auc"] <= 1
    assert report["scores"]["vis_attn"]["current_threshold"].startswith("vis_attn >= p25")
    assert ["dented", 1] in report["ungrounded_words"]
    svg = (tmp_path / "roc.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    text = run("pilot", "report", "p1", check=True).stdout
    assert "AUC" in text and "Cohen's kappa ann / bob" in text and "the paper reports +36%" in text
    # agreement: the same measures as curation/agreement.py gives on the stored labels, each with its n
    from curation import agreement

    by_sample: dict = {}
    for lab in pilots.labels(engine, pilot.id):
        by_sample.setdefault(lab.sample_id, {})[lab.annotator] = lab.label
    expected = agreement.agreement(by_sample)
    assert report["agreement"]["alpha"] == {"value": expected.alpha.value, "n": expected.alpha.n} and expected.alpha.n >= 28
    assert report["agreement"]["pairwise"]["ann|bob"]["n"] == expected.pairwise["ann|bob"].n
    assert set(report["agreement_by_task"]) == {x.task for x in pilots.samples(engine, pilot.id)}
    assert f"Cohen's kappa ann / bob: {expected.pairwise['ann|bob'].value:.3f} (n={expected.pairwise['ann|bob'].n})" in text
    assert f"{expected.alpha.value:.3f} (n={expected.alpha.n})" in text and "Krippendorff's alpha" in text
    assert "p1" in run("pilot", "list", check=True).stdout

    snap = run("snapshot", "create", "s1", "--filter", "good", check=True).stdout
    assert f"snapshot 's1': {shown['kept']} sample(s) kept" in snap
    assert run("snapshot", "create", "s1", "--filter", "good").returncode == 2
    shown_snap = json.loads(run("snapshot", "show", "s1", "--json", check=True).stdout)
    assert shown_snap["created_by"] == "tester" and shown_snap["counts"]["kept"] == shown["kept"]
    out_dir = tmp_path / "exports"
    exported = run("snapshot", "export", "s1", "--format", "all", "--out", str(out_dir), "--ocr", "--local", timeout=300)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "succeeded" in exported.stdout
    for fmt in ("llava", "llamafactory", "swift", "trl", "parquet"):
        verified = run("snapshot", "verify", str(out_dir / fmt), check=True).stdout
        assert f"valid {fmt} export of snapshot 's1': {shown['kept']} record(s)" in verified
    manifest = json.loads((out_dir / "llava" / "manifest.json").read_text())
    assert manifest["lake_version"] == shown_snap["lake_version"] and manifest["filter"]["name"] == "good"
    # beside the LLaMA-Factory export a ready train_lora.yaml for the base model's family; ms-swift's command in its manifest
    import yaml

    lf = yaml.safe_load((out_dir / "llamafactory" / "train_lora.yaml").read_text())
    info = json.loads((out_dir / "llamafactory" / "dataset_info.json").read_text())
    assert lf["template"] == "qwen2_vl" and lf["model_name_or_path"] == "Qwen/Qwen2.5-VL-7B-Instruct" and lf["dataset"] in info
    assert (lf["lora_rank"], lf["lora_alpha"], lf["lora_dropout"], lf["learning_rate"], lf["num_train_epochs"]) == (256, 32, 0.1, 2e-4, 2.0)
    assert lf["freeze_vision_tower"] is False and lf["dataset_dir"] == "."
    lf_manifest = json.loads((out_dir / "llamafactory" / "manifest.json").read_text())
    assert "train_lora.yaml" in lf_manifest["files"] and lf_manifest["trainer"]["family"] == "qwen2_5_vl"
    swift = json.loads((out_dir / "swift" / "manifest.json").read_text())["trainer"]["command"]
    assert swift.startswith("swift sft --model Qwen/Qwen2.5-VL-7B-Instruct") and "--dataset data.jsonl" in swift and "--lora_rank 256" in swift
    assert "llamafactory-cli train train_lora.yaml" in exported.stdout and "swift sft" in exported.stdout
    for fmt in ("llava", "llamafactory", "swift", "trl", "parquet"):  # no path of this machine in what goes to others
        assert str(tmp_path) not in (out_dir / fmt / "manifest.json").read_text()
    # how a trainer finds the images, said on the command line and in the manifest; --absolute-paths for one started elsewhere
    assert f"{out_dir / 'swift'}: image paths relative to this folder: ms-swift opens a relative path" in exported.stdout
    assert f"{out_dir / 'trl'}: image paths relative to this folder: TRL opens no image paths itself" in exported.stdout
    absolute = run("snapshot", "export", "s1", "--format", "trl", "--out", str(tmp_path / "abs"), "--absolute-paths", "--local", check=True).stdout
    assert f"{tmp_path / 'abs' / 'trl'}: image paths absolute paths of the images in this folder" in absolute
    first = json.loads((tmp_path / "abs" / "trl" / "data.jsonl").read_text().splitlines()[0])
    assert first["images"] and all(p.startswith(str((tmp_path / "abs" / "trl").resolve())) and Path(p).is_file() for p in first["images"])
    assert "valid trl export" in run("snapshot", "verify", str(tmp_path / "abs" / "trl"), check=True).stdout
    # the same export again is allowed (same snapshot and format); another snapshot's is not, without --force
    run("filter", "save", "loose", "--where", "vis_attn >= p5", check=True)
    run("snapshot", "create", "s2", "--filter", "loose", check=True)
    busy = run("snapshot", "export", "s2", "--format", "llava", "--out", str(out_dir), "--local")
    assert busy.returncode == 2 and "exists and is not empty" in busy.stderr
    diff = json.loads(run("snapshot", "diff", "s1", "s2", "--json", check=True).stdout)
    assert sum(c["added"] for c in diff.values()) > 0 and sum(c["removed"] for c in diff.values()) == 0
    assert "s1" in run("snapshot", "list", check=True).stdout


def test_curation_commands_refuse_bad_input(store, cli, tmp_path):
    run = cli
    cases = [
        (("filter", "save", "x", "--where", "vis_attn ~ 3"), "cannot read the condition"),
        (("filter", "save", "x"), "give at least one condition"),
        (("filter", "save", "x", "--where", "vis_attn >= p10", "--model", "clip_score=clip-a"), "which no condition uses"),
        (("filter", "save", "x", "--where", "vis_attn >= p10", "--model", "vis_attn=other"), "no vis_attn scores from model 'other'"),
        (("filter", "show", "nope"), "no saved filter 'nope'"),
        (("pilot", "report", "nope"), "no pilot 'nope'"),
        (("pilot", "create", "p", "--vis-model", "other"), "no vis_attn scores from 'other'"),
        (("snapshot", "create", "s", "--filter", "nope"), "no saved filter 'nope'"),
        (("snapshot", "export", "nope", "--format", "llava"), "no snapshot 'nope'"),
        (("snapshot", "verify", str(tmp_path)), "no readable manifest.json"),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    run("filter", "save", "none", "--where", "vis_attn > 1000", check=True)
    proc = run("filter", "show", "none", "--at-version", "99999")
    assert proc.returncode == 2 and "there is no version 99999 yet" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("snapshot", "create", "empty", "--filter", "none")
    assert proc.returncode == 2 and "keeps no samples" in proc.stderr
    run("pilot", "create", "p", "--size", "10", check=True)
    proc = run("pilot", "report", "p")
    assert proc.returncode == 2 and "has no labels yet" in proc.stderr
    # customer text with terminal escape sequences is printed without them
    proc = run("pilot", "label", "p", "--annotator", "z", input="q\n", check=True)
    assert "\x1b" not in proc.stdout
