"""Pipeline recipes (`vitpro run`): the file's form, every stage checked before any runs with the stage and
field named, deferred checks, --from, the examples, `vitpro train --config`, and a real run through real
workers that fails at a stage and is resumed from it."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from .conftest import REPO

EXAMPLES = REPO / "examples"


def _vitpro(*args: str):
    from vitpro.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory) -> Path:
    """The four tiny models the demo recipe names (idefics2, qwen2_5_vl, clip, llama), built once here."""
    from curation.tiny_models import make_tiny

    root = tmp_path_factory.mktemp("recipe-models")
    for family in ("idefics2", "qwen2_5_vl", "clip", "llama"):
        make_tiny(family, root / family)
    return root


def _jobs() -> list:
    from config.settings import load_settings
    from db.app import jobs
    from db.app.engine import write_engine
    from db.store import open_store

    s = load_settings()
    open_store(s.store)
    return jobs.list_jobs(write_engine(s.app_url))


# ---- the file's form --------------------------------------------------------------------------------------
def test_malformed_recipes_are_refused_with_every_problem_named(home, tmp_path):
    from vitpro.recipes import RecipeError, load_recipe

    recipe = _write(tmp_path / "bad.yaml", """
name: bad
colour: blue
vars:
  home: /elsewhere
stages:
  - ocr: {batch_size: 4}
  - ocrr: {}
  - ocr: {}
    generate: {}
  - label: same
    sample: {by: [category], per_stratum: 5}
  - label: same
    filter: {name: f, where: [task == recognition]}
  - ocr: {}
    if_exists: skip
  - just a string
  - pilot: [not, a, mapping]
""")
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    messages = caught.value.messages
    assert any(m.startswith(f"{recipe}: unknown key(s) colour;") for m in messages)
    assert "vars.home: a variable of its own (built in)" in messages
    assert any(m.startswith("stages[1]: unknown stage 'ocrr'; stages: ablate, aux_stats, calibrate, clip_score, clusters, dedup, eval, export, filter,") for m in messages)
    assert "stages[2]: one stage per entry, not ocr, generate; each goes in an entry of its own" in messages
    assert "stages[4].label: 'same' is also stages[3]'s; labels are unique" in messages
    assert any(m.startswith("stages[5] (ocr).if_exists: only a stage that makes a named thing has it") for m in messages)
    assert any(m.startswith("stages[6]: a stage is a mapping with one stage key") for m in messages)
    assert any(m.startswith("stages[7] (pilot): its fields are a mapping of FIELD: VALUE") for m in messages)
    assert len(messages) == 8

    # through the command line: exit 2, each problem on a line of its own, nothing run
    result = _vitpro("run", str(recipe), "--dry-run")
    assert result.exit_code == 2
    assert "error: stages[1]: unknown stage 'ocrr'" in result.output
    assert _jobs() == []


def test_dry_run_checks_every_stage_and_names_stage_and_field(home, tmp_path):
    recipe = _write(tmp_path / "r.yaml", """
stages:
  - ocr:
      batch_size: 16
      bogus: 1
  - label: score
    grounding:
      model: ./no-such-model
      batch_size: 0
  - sample:
      by: [category]
      per_stratum: many
  - filter:
      name: kept
      where: [vis_attn >= p25, loudness > 3]
  - export:
      snapshot: never-made
      out: ./out
  - generate:
      backend: template
      n_pairs: 21
""")
    result = _vitpro("run", str(recipe), "--dry-run")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: stages[0] (ocr).bogus: no such field of OcrJob; fields: engine, batch_size,")
    assert errors[1] == "error: stages[1] (score).batch_size: must be at least 1, not 0"
    assert errors[2] == "error: stages[2] (sample).per_stratum: expected a whole number, got 'many'"
    assert errors[3].startswith("error: stages[3] (filter).where[1]: unknown stat 'loudness'")
    assert errors[4] == "error: stages[4] (export).snapshot: no snapshot 'never-made' in the store, and no earlier stage makes one"
    assert errors[5] == "error: stages[5] (generate).n_pairs: must be at most 20, not 21"
    assert len(errors) == 6
    assert "the recipe is not valid: 6 problem(s); nothing was run" in result.output
    # the plan was printed all the same: each stage, its kind and where it runs
    assert "[0] ocr: ocr, a job" in result.output and "[2] sample: sample, in this process" in result.output
    assert "[4] export: export, queue 'cpu'" in result.output and "      base_family: qwen2_5_vl" in result.output  # resolved fields
    assert _jobs() == []

    # the model folder is checked once the batch size is right, and named by its field
    fixed = recipe.read_text().replace("batch_size: 0", "batch_size: 4")
    result = _vitpro("run", str(_write(recipe, fixed)), "--dry-run")
    assert any(line.startswith("error: stages[1] (score).model: ") and "no-such-model" in line for line in result.output.splitlines()), result.output


def test_variables_references_and_relative_paths(home, tmp_path, demo_models):
    from vitpro.recipes import RecipeError, load_recipe

    folder = tmp_path / "recipes"
    folder.mkdir()
    recipe = _write(folder / "r.yaml", f"""
vars:
  vlm: {demo_models / 'idefics2'}
  per: 7
  tag: price$$5
stages:
  - grounding:
      model: ${{vlm}}
      batch_size: ${{per}}
  - filter:
      name: f-${{tag}}
      where: [vis_attn >= p25]
      models:
        vis_attn: ${{stages.grounding.model_id}}
  - export:
      snapshot: s
      out: ./exports/${{stages.filter.name}}
      dataset_name: ${{recipe_dir}}
""")
    from vitpro.recipe_stages import StageContext
    from vitpro.recipes import plan

    loaded = load_recipe(recipe, ["per=3"])
    assert loaded.variables["per"] == 3 and loaded.variables["recipe_dir"] == str(folder.resolve())
    _, prepared = plan(loaded, StageContext(settings=__import__("config.settings", fromlist=["x"]).load_settings()))
    grounding, filter_stage, export = prepared
    assert grounding.errors == [] and grounding.params["batch_size"] == 3  # a whole-value reference keeps its type
    assert grounding.params["model_id"] == str((demo_models / "idefics2").resolve()) + "#ocr"
    assert filter_stage.params["name"] == "f-price$5"
    assert filter_stage.params["models"] == {"vis_attn": grounding.params["model_id"]}
    assert export.values["out"] == str(folder.resolve() / "exports" / "f-price$5")  # ./ is the recipe's folder
    assert export.values["dataset_name"] == str(folder.resolve())
    assert export.errors == ["stages[2] (export).snapshot: no snapshot 's' in the store, and no earlier stage makes one"]

    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, ["nope=1"])
    assert caught.value.messages == ["--var nope: the recipe has no variable 'nope'; its variables: vlm, per, tag"]

    later = _write(folder / "later.yaml", """
stages:
  - filter: {name: a, where: ["vis_attn >= p25"], selection: "${stages.sample.name}"}
  - sample: {name: s, by: [category], per_stratum: 2}
  - snapshot: {name: "${colour}", filter: a}
""")
    result = _vitpro("run", str(later), "--dry-run")
    assert result.exit_code == 2
    assert "error: stages[0] (filter).selection: ${stages.sample.name}: stage 'sample' does not come before this one" in result.output
    assert "error: stages[2] (snapshot).name: unknown variable ${colour}; variables: recipe_dir, home, out_root" in result.output


def test_yaml_booleans_are_true_and_false_only(tmp_path):
    from vitpro.recipes import read_yaml

    assert read_yaml("on: samples\ngrid: {ocr: [on, off]}\nx: yes\ny: true\nz: False") == {
        "on": "samples", "grid": {"ocr": ["on", "off"]}, "x": "yes", "y": True, "z": False}


def test_deferred_checks_and_from(home, tmp_path, demo_models):
    """A snapshot named by its DuckLake version is known only when it is made: what names it is checked
    then, and said so; --from starts later, and a value only the skipped stages knew is refused."""
    recipe = _write(tmp_path / "r.yaml", f"""
stages:
  - filter: {{name: f, where: [vis_attn >= p25]}}
  - snapshot: {{name: "v{{version}}", filter: f}}
    if_exists: skip
  - export:
      snapshot: ${{stages.snapshot.name}}
      out: ./out/${{stages.snapshot.name}}
  - train:
      snapshot: ${{stages.snapshot.name}}
      model: {demo_models / 'idefics2'}
      name: ${{stages.snapshot.name}}-lora
      out: ./runs/${{stages.snapshot.name}}-lora
  - eval:
      name: base
      snapshot: ${{stages.snapshot.name}}
      model: {demo_models / 'idefics2'}
      out: ./evals/base
      baseline: ${{stages.train.job}}
""")
    result = _vitpro("run", str(recipe), "--dry-run")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "      snapshot: ${stages.snapshot.name}" in text and f"      out: {tmp_path}/out/${{stages.snapshot.name}}" in text
    assert "  stages[2] (export): snapshot, out known once stage 'snapshot' has run (its name holds {version})" in text
    assert "  stages[1] (snapshot): whether a snapshot of its name exists (if_exists: skip), when it is reached" in text
    assert "  stages[3] (train): snapshot, name, out known once stage 'snapshot' has run (its name holds {version})" in text
    assert "  stages[4] (eval): snapshot known once stage 'snapshot' has run (its name holds {version})" in text
    assert "  stages[4] (eval): baseline known once stage 'train' has run" in text
    assert "valid: 5 stage(s) checked; nothing was run (--dry-run)" in text

    # from the train stage: the snapshot stage before it made nothing yet, so its name is not known
    result = _vitpro("run", str(recipe), "--dry-run", "--from", "train")
    assert result.exit_code == 2
    assert "recipe 'r' (" in result.output and ", from stages[3]" in result.output
    assert ("error: stages[3] (train).snapshot: not known: stage 'snapshot' is before --from and no snapshot it made is found"
            in result.output)
    # from the last stage by its index: the training job's id is not known either
    result = _vitpro("run", str(recipe), "--dry-run", "--from", "4")
    assert "error: stages[4] (eval).baseline: not known: stage 'train' is before --from: its job id is not known" in result.output
    assert "error: stages[0]" not in result.output  # the stages before --from are not checked
    for wrong, message in (("9", "--from 9: the recipe has stages 0 to 4"), ("nope", "--from nope: no stage of that label; stages: filter, snapshot, export, train, eval")):
        result = _vitpro("run", str(recipe), "--dry-run", "--from", wrong)
        assert result.exit_code == 2 and f"error: {message}" in result.output


def test_stages_lists_every_stage_and_describes_fields():
    from jobs.registry import kinds

    result = _vitpro("stages")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines()[2:] if line and not line.startswith("fields of one")]
    assert sorted(listed) == sorted({*kinds(), "sample", "filter", "pilot", "snapshot"})
    grounding = _vitpro("stages", "grounding").output
    assert re.search(r"batch_size\s+int\s+8\s+Samples in one forward pass\. \(at least 1\)", grounding)
    assert "model_id" not in grounding  # derived: not a recipe's to set
    snapshot = _vitpro("stages", "snapshot").output
    assert "{version} in it stands for the DuckLake version of the store's data" in snapshot and "(required)" in snapshot
    assert _vitpro("stages", "nope").exit_code == 2


def test_the_guide_names_every_stage_every_in_process_field_and_every_example():
    from dataclasses import fields

    from vitpro.recipe_stages import LOCAL_STAGES
    from vitpro.recipes import stage_kinds

    guide = (REPO / "docs" / "how-to" / "recipes.md").read_text(encoding="utf-8")
    for kind in stage_kinds():
        assert f"| `{kind}` |" in guide, kind
    for kind, cls in LOCAL_STAGES.items():
        section = guide.split(f"`{kind}`:", 1)[1].split("\n\n`", 1)[0]
        for f in fields(cls):
            assert f"| `{f.name}` |" in section, f"{kind}.{f.name} is not in the guide's table"
    for path in EXAMPLES.glob("*.yaml"):
        assert f"`examples/{path.name}`" in guide, path.name
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert "how-to/recipes.md" in nav


# ---- the examples -----------------------------------------------------------------------------------------
def test_every_example_parses_and_its_fields_are_valid(home):
    from vitpro.recipes import check_fields, load_recipe

    found = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert found == ["catalog.yaml", "complaints.yaml", "demo.yaml", "paper-cluster.yaml"]
    for path in EXAMPLES.glob("*.yaml"):
        recipe = load_recipe(path)
        assert check_fields(recipe) == [], path
    cluster = load_recipe(EXAMPLES / "paper-cluster.yaml")
    assert [s.kind for s in cluster.stages] == ["ingest", "ocr", "generate", "sample", "clip_score", "grounding", "aux_stats", "filter", "pilot",
                                                "snapshot", "export", "train", "eval", "eval", "ablate"]
    assert cluster.variables["gpus"] == 8 and cluster.variables["vlm"] == "s3://my-bucket/vitpro/models/idefics2-8b"
    # the S3 and GPU recipe builds here stage by stage; with another bucket, every s3:// path follows it
    result = _vitpro("run", str(EXAMPLES / "paper-cluster.yaml"), "--fields-only", "--var", "bucket=s3://other/x")
    assert result.exit_code == 0, result.output
    assert "      source: s3://other/x/abo/listings/listings_0.jsonl" in result.output and "      nproc: 8" not in result.output
    assert '"nproc": 8' in result.output and "the fields of 15 stage(s): valid" in result.output
    bad = _vitpro("run", str(EXAMPLES / "paper-cluster.yaml"), "--fields-only", "--var", "gpus=0")
    assert bad.exit_code == 2 and "error: stages[11] (train).config: nproc must be at least 1" in bad.output


def test_demo_recipe_dry_runs_on_the_demo_data(home, demo_models):
    """`vitpro demo --data-only` makes what examples/demo.yaml reads; then its dry run checks all 17 stages."""
    models = home / "models"
    models.mkdir(parents=True)
    for family in ("idefics2", "qwen2_5_vl", "clip", "llama"):
        (models / family).symlink_to(demo_models / family)  # already made: --data-only keeps them
    result = _vitpro("demo", "--data-only", "--products", "4", "--complaints", "4")
    assert result.exit_code == 0, result.output
    assert re.search(r"^run the demo's pipeline on it: vitpro run \S*examples/demo\.yaml$", result.output, re.M), result.output
    result = _vitpro("run", str(EXAMPLES / "demo.yaml"), "--dry-run")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "valid: 17 stage(s) checked; nothing was run (--dry-run)" in text
    heads = re.findall(r"^\[(\d+)\] (\S+): (\w+), (.+)$", text, re.M)
    assert [(label, kind) for _, label, kind, _ in heads] == [
        ("ingest-catalog", "ingest"), ("ingest-complaints", "ingest"), ("ocr", "ocr"), ("generate-template", "generate"), ("generate-hf", "generate"),
        ("sample", "sample"), ("aux_stats", "aux_stats"), ("clip_score", "clip_score"), ("grounding-idefics2", "grounding"),
        ("grounding-qwen", "grounding"), ("filter", "filter"), ("pilot", "pilot"), ("snapshot", "snapshot"), ("export", "export"), ("train", "train"),
        ("eval-base", "eval"), ("eval-tuned", "eval")]
    queues = {label: where for _, label, _, where in heads}
    assert queues["generate-hf"] == "queue 'gpu'" and queues["train"] == "queue 'train'" and queues["filter"] == "in this process"
    vlm = str((demo_models / "idefics2").resolve())
    assert f"      source: {home / 'demo-data' / 'catalog.csv'}" in text and '"pii": {"customer_name": "NAME", "customer_email": "EMAIL"}' in text
    assert f'      models: {{"vis_attn": "{vlm}#ocr"}}' in text  # the filter names the IDEFICS2 scores by the grounding stage's model id
    assert "      seed: 7" in text and '"max_steps": 6' in text
    assert "no live worker serves cpu, gpu, train: the run starts its own (local)" in text


def test_catalog_and_complaints_examples_dry_run_on_real_data(home, shared_data, demo_models, tmp_path):
    vlm = str(demo_models / "idefics2")
    result = _vitpro("run", str(EXAMPLES / "catalog.yaml"), "--dry-run", "--var", f"listings={shared_data / 'abo-samples' / 'listings.jsonl'}", "--var", f"vlm={vlm}")
    assert result.exit_code == 0, result.output
    assert "      format: abo" in result.output and "valid: 11 stage(s) checked" in result.output
    assert "      model_id: http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct#t0.7-m768" in result.output
    template = _vitpro("run", str(EXAMPLES / "catalog.yaml"), "--dry-run", "--var", f"listings={shared_data / 'abo-samples' / 'listings.jsonl'}",
                       "--var", f"vlm={vlm}", "--var", "backend=template")
    assert "      model_id: template-v3" in template.output and "      openai: null" in template.output

    # a catalog CSV of the columns the recipe maps, over the grocery photos; the reviews as they are
    photos = shared_data / "grocery-photos"
    with open(photos / "photos.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:3]
    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "title", "brand", "category", "image"])
        w.writerows([[f"P{i}", r["label"], "Grocer", r["coarse_label"], r["file"]] for i, r in enumerate(rows)])
    args = ["run", str(EXAMPLES / "complaints.yaml"), "--dry-run", "--var", f"catalog={catalog}", "--var", f"photos={photos}",
            "--var", f"reviews={shared_data / 'reviews' / 'amazon_fine_food_200.csv'}", "--var", f"vlm={vlm}"]
    result = _vitpro(*args)
    assert result.exit_code == 0, result.output
    assert '"pii": {"ProfileName": "NAME", "UserId": "UCI"}' in result.output and "valid: 10 stage(s) checked" in result.output
    # a catalog without the mapped columns: refused before anything runs, naming the stage and the field
    _write(catalog, "id,name\nP1,x\n")
    result = _vitpro(*args)
    assert result.exit_code == 2
    assert re.search(r"^error: stages\[0\] \(ingest-catalog\)\.mapping: .*product_id", result.output, re.M), result.output


# ---- vitpro train --config ---------------------------------------------------------------------------------
def test_train_config_file_over_the_preset_under_the_options(tmp_path, capsys):
    from trainer.config import preset
    from vitpro.commands.train import _config

    path = _write(tmp_path / "train.yaml", "lora: {r: 8, alpha: 16}\nbatch_size: 4\nmax_steps: 6\nholdout: 0.25\nimages: {max_images: 3}\n")
    config = _config("paper", str(path), batch_size=2, r=None, learning_rate=None)
    paper = preset("paper")
    assert (config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.parts) == (8, 16, paper.lora.dropout, paper.lora.parts)
    assert (config.batch_size, config.max_steps, config.holdout, config.images.max_images) == (2, 6, 0.25, 3)  # --batch-size over the file
    assert config.learning_rate == paper.learning_rate and config.epochs == paper.epochs
    multi = _config("multi_image", str(path))
    assert multi.learning_rate == preset("multi_image").learning_rate and multi.lora.r == 8 and multi.images.min_images == 2
    for text, message in (("lora: {r: eight}\n", "lora.r: expected a whole number, got 'eight'"),
                          ("epochz: 3\n", "epochz: no such field of TrainConfig"),
                          ("- 1\n", "a mapping of training settings")):
        with pytest.raises(SystemExit) as exc:
            _config("paper", str(_write(path, text)))
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


# ---- real runs --------------------------------------------------------------------------------------------
def test_in_process_stages_run_and_what_exists_is_refused_or_skipped(small_store, tmp_path):
    """A recipe of in-process stages alone runs without a worker: a stratified sample, a filter on it, a
    snapshot of what it keeps; a pilot whose name is taken is refused before anything runs, or skipped."""
    from bench.synthetic_store import VIS_MODEL
    from config.settings import load_settings
    from curation import snapshots
    from db.app import saved_filters
    from db.app.engine import write_engine
    from db.lake import sampling
    from db.store import open_store

    text = f"""
stages:
  - sample: {{name: strat, by: [category], per_stratum: 5, seed: 3}}
  - filter:
      name: recipe-filter
      where: [vis_attn >= p50]
      models: {{vis_attn: {VIS_MODEL}}}
      selection: strat
  - pilot: {{name: bench-pilot, size: 10}}
  - snapshot: {{name: recipe-snap, filter: recipe-filter}}
"""
    recipe = _write(tmp_path / "local.yaml", text)
    s = load_settings()
    lake, engine = open_store(s.store), write_engine(s.app_url)
    refused = _vitpro("run", str(recipe))
    assert refused.exit_code == 2
    assert ("error: stages[2] (pilot).name: a pilot named 'bench-pilot' exists already; give another name, or `if_exists: skip` to keep it and go on"
            in refused.output)
    assert lake.fetchall("SELECT count(*) FROM selections WHERE name = 'strat'")[0][0] == 0  # nothing ran

    recipe = _write(recipe, text.replace("size: 10}", "size: 10}\n    if_exists: skip"))
    result = _vitpro("run", str(recipe))
    assert result.exit_code == 0, result.output
    selected = lake.fetchall("SELECT count(*) FROM selections WHERE name = 'strat'")[0][0]
    strata = sampling.balance(lake, *sampling.stratified(lake, by=["category"], per_stratum=5, seed=3))
    assert selected == sum(r[-1] for r in strata) and len(strata) > 1 and max(r[-1] for r in strata) == 5
    assert f"selection 'strat': {selected} of " in result.output
    assert "    skipped: a pilot named 'bench-pilot' exists (if_exists: skip)" in result.output
    snap = snapshots.get(engine, "recipe-snap")
    saved = saved_filters.get(engine, "recipe-filter")
    assert saved.config["selection"] == "strat" and saved.config["conditions"][0]["model_id"] == VIS_MODEL
    assert snap.filter_name == "recipe-filter" and 0 < snap.counts["kept"] < selected
    assert f"kept {snap.counts['kept']} of {snap.counts['kept'] + snap.counts['dropped']} sample(s)" in result.output
    assert "recipe 'local': 3 stage(s) run, 1 skipped" in result.output

    # again: the snapshot's name is taken now, and is refused before the sample or the filter run again
    again = _vitpro("run", str(recipe))
    assert again.exit_code == 2
    assert "error: stages[3] (snapshot).name: a snapshot named 'recipe-snap' exists already" in again.output


# ---- a real run through workers ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_recipe_runs_through_real_workers_stops_at_a_failed_stage_and_resumes(home, shared_data, demo_models, tmp_path, vitpro_cli):
    from config.settings import load_settings
    from curation import snapshots
    from db.app import saved_filters
    from db.app.engine import write_engine
    from db.store import open_store

    recipe = _write(tmp_path / "abo.yaml", f"""
name: abo
vars:
  cond: answer_chars >= 1
settings:
  local: true
stages:
  - ingest:
      source: {shared_data / 'abo-samples' / 'listings.jsonl'}
      name: abo
  - generate:
      backend: template
      tasks: [recognition, attribute_extraction, counting]
  - sample:
      name: every
      by: [category]
      per_stratum: 1000
  - grounding:
      model: {demo_models / 'idefics2'}
      batch_size: 4
      selection: every
  - filter:
      name: kept
      where: [vis_attn >= p25, "${{cond}}"]
      models:
        vis_attn: ${{stages.grounding.model_id}}
      selection: every
  - snapshot:
      name: abo-v{{version}}
      filter: kept
  - export:
      snapshot: ${{stages.snapshot.name}}
      formats: [llava]
      out: ./exports/${{stages.snapshot.name}}
""")
    # no CLIPScore was stored: the filter stage fails, the run stops there and says how to resume
    first = vitpro_cli("run", str(recipe), "--var", "cond=clip_score >= p20", timeout=280)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "started 1 worker process(es) for cpu, gpu" in out
    assert "[5/7] filter: filter" in out and "[6/7]" not in out
    assert "stage stages[4] (filter) failed; the stages after it did not run" in out
    assert f"once fixed, resume from it: vitpro run {recipe} --var 'cond=clip_score >= p20' --from filter" in out
    done = {j.kind: j for j in _jobs()}
    assert sorted(done) == ["generate", "grounding", "ingest"] and all(j.status == "succeeded" for j in done.values())
    assert done["ingest"].counts["ingested"] == 3
    s = load_settings()
    lake, engine = open_store(s.store), write_engine(s.app_url)
    selected = lake.fetchall("SELECT count(*) FROM selections WHERE name = 'every'")[0][0]
    samples = lake.fetchall("SELECT count(*) FROM samples")[0][0]
    assert selected == samples > 0  # at most 1,000 per category: every sample
    assert done["grounding"].counts["samples_scored"] == selected
    assert saved_filters.list_all(engine) == []

    # resumed from the filter with the condition it should have had: nothing before it runs again
    second = vitpro_cli("run", str(recipe), "--from", "filter", timeout=200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[1/7]" not in second.stdout and "[5/7] filter: filter" in second.stdout
    assert "recipe 'abo': 3 stage(s) run" in second.stdout
    kinds = sorted(j.kind for j in _jobs())
    assert kinds == ["export", "generate", "grounding", "ingest"]
    [snap] = snapshots.list_all(engine)
    assert re.fullmatch(r"abo-v\d+", snap.name) and snap.name == f"abo-v{snap.lake_version}"
    kept = snap.counts["kept"]
    assert 0 < kept < selected and kept + snap.counts["dropped"] == selected  # p25 drops about a quarter
    assert re.search(rf"saved filter 'kept' \(vis_attn >= p25 \(model=.*idefics2#ocr\); answer_chars >= 1(\.0)?; only selection 'every'\): kept {kept} of {selected} "
                     r"sample\(s\)", second.stdout), second.stdout
    manifest = json.loads((tmp_path / "exports" / snap.name / "llava" / "manifest.json").read_text())
    assert manifest["snapshot"] == snap.name and manifest["records"] == kept
