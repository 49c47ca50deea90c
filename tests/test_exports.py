"""Export formats: the prompt layout, every format's validator on good and broken records, LLaMA-Factory's
own demo accepted, and the files read back the way the trainers read them (datasets)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from curation.exports import (
    EXPORT_FORMATS,
    FORMATS,
    ExportError,
    ExportSample,
    read_records,
    user_prompt,
    validate,
    verify_export,
    write_export,
)


def _samples(tmp_path: Path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    sources = {}
    for k, color in enumerate(("red", "blue", "green")):
        path = blobs / f"{k}.png"
        Image.new("RGB", (8, 8), color).save(path)
        sources[f"images/ab/{k}.png"] = path
    samples = [
        ExportSample("s2", "comparison", "Which box is dented?", "The second one.", ("images/ab/0.png", "images/ab/1.png"), ("ACME", ""), "Grocery", "short"),
        ExportSample("s1", "recognition", "What is <image> this?", "A jar of jam.", ("images/ab/2.png",), ("JAM 250 g",), "Grocery", "short"),
        ExportSample("s3", "refusal", "What is the customer's name?", "I cannot tell from the photo.", (), (), None, "short"),
    ]
    return samples, sources


def test_prompt_layout_numbers_images_separates_sections_and_escapes_tags(tmp_path):
    samples, _ = _samples(tmp_path)
    multi, single, text_only = samples
    assert user_prompt(single, ocr=False) == "<image>\nWhat is [image] this?"  # a literal tag from data would shift the images
    assert user_prompt(single, ocr=True) == "<image>\nOCR Tokens: JAM 250 g\n###\nWhat is [image] this?"
    assert user_prompt(multi, ocr=True) == "[1] <image>\n[2] <image>\n###\nOCR Tokens: [1] ACME\n###\nWhich box is dented?"
    assert user_prompt(text_only, ocr=True) == "What is the customer's name?"
    from curation.prompt_layout import ocr_body

    # an evaluation item's two photos after two in-context examples' photos are images [3] and [4]
    assert ocr_body(["ACME", "", "250 ml"], 3, first=3) == "[3] ACME [5] 250 ml" and ocr_body(["ACME"], 1, first=3) == "ACME"


def test_every_format_round_trips_through_its_validator(tmp_path):
    samples, sources = _samples(tmp_path)
    for fmt in FORMATS:
        out = tmp_path / "out" / fmt
        result = write_export(out, fmt, samples, sources=sources, meta={"snapshot": "t"}, ocr=True)
        assert result.records == 3 and result.images == 3
        records = read_records(fmt, out)
        validate(fmt, records, root=out)
        manifest = verify_export(out)
        assert manifest["per_task"] == {"comparison": 1, "recognition": 1, "refusal": 1} and manifest["multi_image_records"] == 1
        assert set(manifest["files"]) >= {"images/ab/0.png", "images/ab/1.png", "images/ab/2.png"}
        # a changed file is caught
        victim = out / "images/ab/0.png"
        victim.write_bytes(victim.read_bytes() + b"x")
        with pytest.raises(ExportError, match="differ from the manifest"):
            verify_export(out)
    llava = json.loads((tmp_path / "out/llava/llava.json").read_text())
    assert [r["id"] for r in llava] == ["s1", "s2", "s3"]
    assert llava[0]["image"] == "images/ab/2.png" and llava[1]["image"] == ["images/ab/0.png", "images/ab/1.png"] and "image" not in llava[2]
    assert [t["from"] for t in llava[0]["conversations"]] == ["human", "gpt"]
    trl = [json.loads(line) for line in (tmp_path / "out/trl/data.jsonl").read_text().splitlines()]
    parts = trl[1]["prompt"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image", "text", "image", "text"]
    # images are parts of their own: no text part starts with the flat layouts' line break after <image>
    assert parts[2]["text"] == "[2] " and parts[4]["text"] == "###\nOCR Tokens: [1] ACME\n###\nWhich box is dented?"
    assert trl[0]["prompt"][0]["content"] == [{"type": "image"}, {"type": "text", "text": "OCR Tokens: JAM 250 g\n###\nWhat is [image] this?"}]
    assert trl[1]["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": "The second one."}]}]


BROKEN = {
    "llava": [
        (lambda r: r["conversations"][0].update(value="no tag here"), "<image> tag"),
        (lambda r: r["conversations"].reverse(), "must be a non-empty 'human' turn"),
        (lambda r: r.update(image="/etc/passwd"), "not relative to the export folder"),
        (lambda r: r["conversations"][1].update(value="  "), "non-empty 'gpt' turn"),
    ],
    "llamafactory": [
        (lambda r: r["messages"][0].update(content="<image>one"), "1 <image> tag\\(s\\) for 2 image"),
        (lambda r: r["messages"].append({"role": "assistant", "content": "again"}), "user/assistant pairs"),
        (lambda r: r["messages"][1].update(role="user"), "roles alternate"),
        (lambda r: r.update(images="images/x.png"), "images must be a list"),
        (lambda r: r.update(images=["../outside.png"]), "not relative"),
    ],
    "swift": [
        (lambda r: r["messages"][1].update(content="<image> in the answer", role="assistant") or r["images"].append(r["images"][0]), "assistant message holds an <image>"),
    ],
    "trl": [
        (lambda r: r["completion"][0]["content"].append({"type": "image"}), "image in the completion"),
        (lambda r: r["prompt"][0]["content"].remove({"type": "image"}), "1 image part\\(s\\) for 2 image"),
        (lambda r: r["prompt"][0]["content"].append({"type": "text", "text": "<image>"}), "<image> tag inside text"),
        (lambda r: r.update(completion=[]), "completion one assistant message"),
        (lambda r: r["prompt"][0]["content"][-1].update(text="\n" + r["prompt"][0]["content"][-1]["text"]), "starts with a line break"),
    ],
    "parquet": [
        (lambda r: r.update(answer=""), "answer must be non-empty"),
        (lambda r: r.update(prompt="no tag"), "0 <image> tag"),
    ],
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_validators_refuse_broken_records(tmp_path, fmt):
    samples, sources = _samples(tmp_path)
    good = [EXPORT_FORMATS[fmt].record(s, False) for s in samples]
    validate(fmt, good)
    for breaker, message in BROKEN[fmt]:
        records = copy.deepcopy(good)
        breaker(records[0])
        with pytest.raises(ExportError, match=message):
            validate(fmt, records)
    if fmt != "llamafactory":  # records with an id
        with pytest.raises(ExportError, match="duplicate id"):
            validate(fmt, good + [copy.deepcopy(good[0])])
    # a missing image file is caught when the folder is checked, and nothing is written for a bad export
    out = tmp_path / "out"
    write_export(out, fmt, samples, sources=sources, meta={})
    (out / "images/ab/2.png").unlink()
    with pytest.raises(ExportError, match="missing"):
        validate(fmt, read_records(fmt, out), root=out)
    with pytest.raises(ExportError, match="exists and is not empty"):
        write_export(out, fmt, samples, sources=sources, meta={})
    sources_missing = dict(sources)
    sources_missing.pop("images/ab/0.png")
    with pytest.raises(ExportError, match="missing from the store"):
        write_export(tmp_path / "other", fmt, samples, sources=sources_missing, meta={})
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other.tmp-*"))


def test_llamafactory_demo_passes_our_validator_and_our_entry_has_its_shape(shared_data, tmp_path):
    demo = shared_data / "formats" / "llamafactory-mllm-demo"
    info = json.loads((demo / "dataset_info.json").read_text())
    validate("llamafactory", json.loads((demo / info["mllm_demo"]["file_name"]).read_text()), root=demo)
    samples, sources = _samples(tmp_path)
    out = tmp_path / "lf"
    write_export(out, "llamafactory", samples, sources=sources, meta={}, dataset_name="products")
    ours = json.loads((out / "dataset_info.json").read_text())["products"]
    theirs = info["mllm_demo"]
    assert {k: v for k, v in ours.items() if k != "file_name"} == {k: v for k, v in theirs.items() if k != "file_name"}


def test_exports_read_with_datasets_as_the_trainers_read_them(tmp_path):
    datasets = pytest.importorskip("datasets")
    samples, sources = _samples(tmp_path)
    out = tmp_path / "x"
    for fmt in ("llamafactory", "parquet", "swift"):
        write_export(out / fmt, fmt, samples, sources=sources, meta={}, ocr=True, dataset_name="products")
    # LLaMA-Factory: dataset_info.json names the file; it loads it with load_dataset("json", data_files=...)
    entry = json.loads((out / "llamafactory/dataset_info.json").read_text())["products"]
    ds = datasets.load_dataset("json", data_files=str(out / "llamafactory" / entry["file_name"]), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3 and set(ds.column_names) == {entry["columns"]["messages"], entry["columns"]["images"]}
    for row in ds:
        roles = [m[entry["tags"]["role_tag"]] for m in row["messages"]]
        assert roles == ["user", "assistant"]
        assert sum(m["content"].count("<image>") for m in row["messages"]) == len(row["images"])
        assert all((out / "llamafactory" / p).is_file() for p in row["images"])
    pq = datasets.load_dataset("parquet", data_files=str(out / "parquet/data.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert pq.num_rows == 3 and pq[0]["id"] == "s1" and pq[1]["images"] == ["images/ab/0.png", "images/ab/1.png"]
    assert pq[1]["prompt"].startswith("[1] <image>\n[2] <image>\n###\n")
    sw = datasets.load_dataset("json", data_files=str(out / "swift/data.jsonl"), split="train", cache_dir=str(tmp_path / "cache"))
    assert sw.num_rows == 3 and sw[2]["images"] == []


def test_trainer_settings_for_every_family_name_its_llamafactory_template_and_the_papers_lora():
    import yaml

    from curation.vlm import FAMILIES
    from trainer.config import LoraSettings, TrainConfig
    from trainer.external_configs import llamafactory_yaml, swift_command

    expected = {"llava": "llava", "qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_vl", "qwen3_vl": "qwen3_vl_nothink", "gemma3": "gemma3",
                "internvl": "intern_vl", "mistral3": "mistral_small", "idefics2": None, "idefics3": None, "llava_onevision": None}
    for name, template in expected.items():
        text = llamafactory_yaml(FAMILIES[name], "/home/me/models/base", "shop")
        if template is None:
            assert text is None, name  # LLaMA-Factory has no template for it: no YAML that could not run
            continue
        lf = yaml.safe_load(text)
        assert lf["template"] == template and lf["model_name_or_path"] == "base" and lf["dataset"] == "shop", name
        assert (lf["lora_rank"], lf["lora_alpha"], lf["lora_dropout"], lf["stage"], lf["finetuning_type"]) == (256, 32, 0.1, "sft", "lora")
        assert not (lf["freeze_vision_tower"] or lf["freeze_multi_modal_projector"] or lf["freeze_language_model"])
    lm_only = yaml.safe_load(llamafactory_yaml(FAMILIES["gemma3"], "google/gemma-3-4b-it", "shop", TrainConfig(lora=LoraSettings(parts=("language",)))))
    assert lm_only["freeze_vision_tower"] and lm_only["freeze_multi_modal_projector"] and "additional_target" not in lm_only
    args = swift_command("Qwen/Qwen3-VL-8B-Instruct", "data.jsonl", TrainConfig(lora=LoraSettings(parts=("vision", "language"))))
    flags = dict(zip(args[2::2], args[3::2]))
    assert flags["--model"] == "Qwen/Qwen3-VL-8B-Instruct" and flags["--use_hf"] == "true" and flags["--train_type"] == "lora"
    assert (flags["--freeze_vit"], flags["--freeze_aligner"], flags["--freeze_llm"]) == ("false", "true", "false")
    assert (flags["--lora_rank"], flags["--learning_rate"], flags["--num_train_epochs"]) == ("256", "0.0002", "2.0")


def test_model_ids_in_exports_are_hub_ids_or_folder_names(tmp_path):
    from curation.model_ids import public_model_id, scrub_paths

    assert public_model_id("/srv/models/idefics2-8b#ocr") == "idefics2-8b#ocr"
    assert public_model_id("local-dir:/srv/models/clip") == "clip" and public_model_id("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert scrub_paths({"models": [{"vis_attn": "/a/b/qwen"}], "n": 3}) == {"models": [{"vis_attn": "qwen"}], "n": 3}
    described = {"vis_attn >= p25 (model=/srv/m/idefics2#ocr, per task)": 0.1, "clip (model=local-dir:/srv/m/clip)": "Qwen/Qwen2.5-VL-7B-Instruct"}
    assert scrub_paths(described) == {"vis_attn >= p25 (model=idefics2#ocr, per task)": 0.1, "clip (model=clip)": "Qwen/Qwen2.5-VL-7B-Instruct"}
    samples, sources = _samples(tmp_path)
    out = tmp_path / "x"
    write_export(out, "swift", samples, sources=sources, meta={"models": [{"metric": "vis_attn", "model_id": str(tmp_path / "models" / "qwen2_5_vl")}]},
                 extra_files={"train.sh": b"swift sft ...\n"})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"] == [{"metric": "vis_attn", "model_id": "qwen2_5_vl"}] and str(tmp_path) not in (out / "manifest.json").read_text()
    assert (out / "train.sh").read_bytes() == b"swift sft ...\n" and "train.sh" in manifest["files"]
    verify_export(out)
    with pytest.raises(ExportError, match="replace the export's own"):
        write_export(tmp_path / "y", "swift", samples, sources=sources, meta={}, extra_files={"data.jsonl": b""})


def test_manifest_says_how_image_paths_resolve_and_absolute_paths_point_into_the_folder(tmp_path):
    samples, sources = _samples(tmp_path)
    for fmt in ("swift", "trl"):
        rel = write_export(tmp_path / "rel" / fmt, fmt, samples, sources=sources, meta={"snapshot": "t"})
        manifest = json.loads((rel.folder / "manifest.json").read_text())
        assert manifest["absolute_paths"] is False and manifest["image_paths"].startswith("relative to this folder")
        assert read_records(fmt, rel.folder)[0]["images"] == ["images/ab/2.png"]
    assert "ROOT_IMAGE_DIR" in json.loads((tmp_path / "rel/swift/manifest.json").read_text())["image_paths"]
    assert "TRL opens no image paths itself" in json.loads((tmp_path / "rel/trl/manifest.json").read_text())["image_paths"]
    # relative paths: the same bytes wherever the folder is written
    write_export(tmp_path / "elsewhere" / "swift", "swift", samples, sources=sources, meta={"snapshot": "t"})
    assert (tmp_path / "elsewhere/swift/data.jsonl").read_bytes() == (tmp_path / "rel/swift/data.jsonl").read_bytes()

    for fmt in FORMATS:
        out = tmp_path / "abs" / fmt
        write_export(out, fmt, samples, sources=sources, meta={"snapshot": "t"}, absolute_paths=True)
        manifest = verify_export(out)
        assert manifest["absolute_paths"] is True and manifest["image_paths"].startswith("absolute paths")
        records = read_records(fmt, out)
        paths = [records[0]["image"]] if fmt == "llava" else records[0]["images"]
        assert paths == [str(out.resolve() / "images/ab/2.png")] and Path(paths[0]).is_file()
    multi = read_records("trl", tmp_path / "abs" / "trl")[1]["images"]
    assert multi == [str((tmp_path / "abs/trl").resolve() / f"images/ab/{k}.png") for k in (0, 1)]
    # moved, the absolute paths point at nothing of the folder: verify says so
    (tmp_path / "abs" / "swift").rename(tmp_path / "moved")
    with pytest.raises(ExportError, match="is not inside .*moved.*was the folder moved"):
        verify_export(tmp_path / "moved")


def test_every_format_is_one_registered_object_and_the_choices_come_from_the_registry():
    from curation.exports import DATA_FILES, data_files, image_paths_note

    assert FORMATS == ("llava", "llamafactory", "swift", "trl", "parquet") == tuple(EXPORT_FORMATS)
    assert DATA_FILES == {name: f.data_file for name, f in EXPORT_FORMATS.items()}
    assert sorted(data_files("llamafactory", [], "ds")) == ["data.json", "dataset_info.json"]
    assert sorted(data_files("trl", [], "ds")) == ["data.jsonl"]
    assert image_paths_note("llava").startswith("relative to this folder: give the folder as LLaVA's --image_folder")
    with pytest.raises(ValueError, match="registered twice"):
        EXPORT_FORMATS.add(EXPORT_FORMATS["llava"])
    with pytest.raises(ExportError, match="unknown format 'csv'; formats are llava, llamafactory, swift, trl, parquet"):
        validate("csv", [])
