"""Exports of a snapshot in the formats trainers read: LLaVA JSON, LLaMA-Factory sharegpt, ms-swift JSONL,
TRL prompt/completion and Parquet.

Every export is built in memory, checked by the validator of its format, then written to a fresh folder
next to the target and moved into place, so a failed export never leaves half a folder. The folder holds
the data file(s), ``images/`` (content-addressed, so paths are stable across exports) and
``manifest.json`` with the counts, filter, DuckLake version, model and prompt ids, how the image paths
resolve (``image_paths``) and the sha256 of every file. Image paths are relative to the export folder;
nothing in it depends on when or where it was written: the same snapshot gives the same bytes (the tests
hold it to that). ``absolute_paths=True`` writes each image's absolute path in the folder instead, for
trainers started elsewhere (those bytes then depend on where the folder is, and moving it breaks them).

Prompts are laid out by ``prompt_layout`` (the layout scoring and training use too): one image is
``<image>\\n`` then the question; several images are numbered ``[1] <image>``, ``[2] <image>`` ... and the
sections are separated by ``###`` as in the paper's multi-image variant; with ``ocr=True`` the OCR text
comes as ``OCR Tokens: ...`` in a section of its own.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from config.registry import Registry

from .hashing import file_sha256
from .model_ids import scrub_paths
from .prompt_layout import flatten, ocr_body, user_parts

IMAGE_TAG = "<image>"
MANIFEST = "manifest.json"
LLAMAFACTORY_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
ABSOLUTE_IMAGE_PATHS = "absolute paths of the images in this folder as it was written (moving the folder breaks them)"


class ExportError(ValueError):
    """An export that would not be read correctly by its trainer; nothing was written."""


@dataclass(frozen=True)
class ExportSample:
    sample_id: str
    task: str
    question: str
    answer: str
    images: tuple[str, ...]  # paths relative to the export folder, in the sample's order
    ocr: tuple[str, ...] = ()  # OCR text per image ('' where none)
    category: str | None = None
    answer_format: str | None = None
    label: str | None = None


def _escape(text: str) -> tuple[str, int]:
    """Text from data must not add image tags: a literal ``<image>`` would shift every image by one."""
    n = text.count(IMAGE_TAG)
    return (text.replace(IMAGE_TAG, "[image]"), n) if n else (text, 0)


def prompt_parts(sample: ExportSample, *, ocr: bool) -> list[dict]:
    """The user turn as chat content parts, laid out as every prompt is (``prompt_layout``)."""
    question, _ = _escape(sample.question)
    texts = [_escape(t)[0] for t in sample.ocr] if ocr else []
    return user_parts(len(sample.images), question, ocr_body(texts, len(sample.images)))


def user_prompt(sample: ExportSample, *, ocr: bool) -> str:
    return flatten(prompt_parts(sample, ocr=ocr), IMAGE_TAG)


def answer_text(sample: ExportSample) -> str:
    return _escape(sample.answer)[0]


# ---- records per format ------------------------------------------------------------------------------
def llava_record(s: ExportSample, ocr: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"id": s.sample_id}
    if len(s.images) == 1:
        record["image"] = s.images[0]
    elif s.images:
        record["image"] = list(s.images)  # LLaVA-NeXT / OneVision read a list for several images
    record["conversations"] = [{"from": "human", "value": user_prompt(s, ocr=ocr)}, {"from": "gpt", "value": answer_text(s)}]
    return record


def sharegpt_record(s: ExportSample, ocr: bool) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": user_prompt(s, ocr=ocr)}, {"role": "assistant", "content": answer_text(s)}],
        "images": list(s.images),
    }


def swift_record(s: ExportSample, ocr: bool) -> dict[str, Any]:
    return {"id": s.sample_id, **sharegpt_record(s, ocr)}


def trl_record(s: ExportSample, ocr: bool) -> dict[str, Any]:
    # Conversational prompt/completion: TRL's SFTTrainer computes the loss on the completion only. Images are
    # parts of their own, so the line break the flat layouts put after ``<image>`` has no place here.
    content = [p if p["type"] != "text" else {**p, "text": p["text"].lstrip("\n")} for p in prompt_parts(s, ocr=ocr)]
    content = [p for p in content if p["type"] != "text" or p["text"]]
    return {
        "id": s.sample_id,
        "prompt": [{"role": "user", "content": content}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": answer_text(s)}]}],
        "images": list(s.images),
    }


def parquet_record(s: ExportSample, ocr: bool) -> dict[str, Any]:
    return {
        "id": s.sample_id, "task": s.task, "category": s.category, "answer_format": s.answer_format, "label": s.label,
        "prompt": user_prompt(s, ocr=ocr), "answer": answer_text(s), "images": list(s.images), "ocr": list(s.ocr),
    }


# ---- validators: the rules each trainer relies on --------------------------------------------------------
def _images_ok(images: Any, where: str, problems: list[str], root: Path | None) -> list[str]:
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        problems.append(f"{where}: images must be a list of paths")
        return []
    for p in images:
        if os.path.isabs(p) or ".." in Path(p).parts:
            problems.append(f"{where}: image path {p!r} is not relative to the export folder")
        elif root is not None and not (root / p).is_file():
            problems.append(f"{where}: image {p} is missing")
    return images


def _turns_ok(turns: Any, where: str, problems: list[str], *, field: str, role_key: str, text_key: str, roles: tuple[str, str],
              noun: str, hint: str = "") -> bool:
    """Turns in (ask, answer) pairs, roles alternating, none empty: what LLaVA's conversations and the
    sharegpt messages share. Records the first problem and returns False."""
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        problems.append(f"{where}: {field} must be {roles[0]}/{roles[1]} pairs")
        return False
    for k, turn in enumerate(turns):
        expected = roles[k % 2]
        if not isinstance(turn, dict) or turn.get(role_key) != expected or not isinstance(turn.get(text_key), str) or not turn[text_key].strip():
            problems.append(f"{where}: {noun} {k} must be a non-empty {expected!r} {noun}{hint}")
            return False
    return True


def _check_llava(r: dict, where: str, problems: list[str], root: Path | None) -> None:
    if not isinstance(r.get("id"), str) or not r["id"]:
        problems.append(f"{where}: no id")
    image = r.get("image")
    images = _images_ok([image] if isinstance(image, str) else (image if image is not None else []), where, problems, root)
    conv = r.get("conversations")
    if not _turns_ok(conv, where, problems, field="conversations", role_key="from", text_key="value", roles=("human", "gpt"), noun="turn"):
        return
    tags = sum(t["value"].count(IMAGE_TAG) for t in conv)
    if tags != len(images) or (images and IMAGE_TAG not in conv[0]["value"]):
        problems.append(f"{where}: {tags} <image> tag(s) for {len(images)} image(s); they belong in the first human turn")


def _check_messages(r: dict, where: str, problems: list[str], root: Path | None) -> None:
    images = _images_ok(r.get("images"), where, problems, root)
    msgs = r.get("messages")
    if not _turns_ok(msgs, where, problems, field="messages", role_key="role", text_key="content", roles=("user", "assistant"), noun="message",
                     hint=" (roles alternate user/assistant)"):
        return
    tags = sum(m["content"].count(IMAGE_TAG) for m in msgs)
    if tags != len(images):
        problems.append(f"{where}: {tags} <image> tag(s) for {len(images)} image(s)")
    if any(IMAGE_TAG in m["content"] for m in msgs[1::2]):
        problems.append(f"{where}: an assistant message holds an <image> tag")


def _check_trl(r: dict, where: str, problems: list[str], root: Path | None) -> None:
    images = _images_ok(r.get("images"), where, problems, root)
    prompt, completion = r.get("prompt"), r.get("completion")
    if not isinstance(prompt, list) or not prompt or not isinstance(completion, list) or len(completion) != 1:
        problems.append(f"{where}: prompt must be a list of messages and completion one assistant message")
        return
    if prompt[-1].get("role") != "user" or completion[0].get("role") != "assistant":
        problems.append(f"{where}: the prompt ends with the user and the completion is the assistant's")
        return
    n_image_parts = 0
    for m in prompt + completion:
        content = m.get("content")
        if not isinstance(content, list) or not content:
            problems.append(f"{where}: message content must be a list of parts")
            return
        for part in content:
            if part.get("type") == "image":
                n_image_parts += 1
            elif part.get("type") != "text" or not isinstance(part.get("text"), str):
                problems.append(f"{where}: a content part is {{'type': 'image'}} or {{'type': 'text', 'text': ...}}")
                return
            elif IMAGE_TAG in part["text"]:
                problems.append(f"{where}: an <image> tag inside text (TRL places images by parts)")
            elif part["text"].startswith("\n"):
                problems.append(f"{where}: a text part starts with a line break (images are parts of their own)")
    if any(p.get("type") == "image" for p in completion[0]["content"]):
        problems.append(f"{where}: an image in the completion")
    if n_image_parts != len(images):
        problems.append(f"{where}: {n_image_parts} image part(s) for {len(images)} image(s)")
    if not "".join(p.get("text", "") for p in completion[0]["content"]).strip():
        problems.append(f"{where}: empty completion")


def _check_parquet(r: dict, where: str, problems: list[str], root: Path | None) -> None:
    images = _images_ok(r.get("images"), where, problems, root)
    for key in ("id", "task", "prompt", "answer"):
        if not isinstance(r.get(key), str) or not r[key].strip():
            problems.append(f"{where}: {key} must be non-empty text")
    if isinstance(r.get("prompt"), str) and r["prompt"].count(IMAGE_TAG) != len(images):
        problems.append(f"{where}: {r['prompt'].count(IMAGE_TAG)} <image> tag(s) for {len(images)} image(s)")


# ---- serialising -------------------------------------------------------------------------------------
def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _parquet_bytes(records: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("id", pa.string()), ("task", pa.string()), ("category", pa.string()), ("answer_format", pa.string()), ("label", pa.string()),
        ("prompt", pa.string()), ("answer", pa.string()), ("images", pa.list_(pa.string())), ("ocr", pa.list_(pa.string())),
    ])
    table = pa.Table.from_pylist(records, schema=schema)
    sink = io.BytesIO()
    # no timestamps or writer paths go into the file: the same rows give the same bytes
    pq.write_table(table, sink, compression="zstd", row_group_size=50_000)
    return sink.getvalue()


def _read_json(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _llamafactory_info(data_file: str, dataset_name: str) -> dict[str, bytes]:
    entry = {"file_name": data_file, "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}, "tags": dict(LLAMAFACTORY_TAGS)}
    return {"dataset_info.json": _json_bytes({dataset_name: entry})}


# ---- the formats ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportFormat:
    """Everything one trainer's format is: how a sample becomes a record, the rules a record obeys, the
    data file it is written to and read back from, and how the trainer finds an image from its path."""

    name: str
    data_file: str
    record: Callable[[ExportSample, bool], dict[str, Any]]  # (sample, OCR in the prompt) -> record
    check: Callable[[dict, str, list[str], Path | None], None]  # appends what is wrong with one record
    write: Callable[[list[dict]], bytes]
    read: Callable[[Path], list[dict[str, Any]]]
    image_paths: str  # the manifest's ``image_paths`` (and what the CLI says)
    image_key: str = "images"  # the record's key that holds its image path(s)
    companions: Callable[[str, str], dict[str, bytes]] | None = None  # (data file, dataset name) -> files beside it


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", key=lambda fmt: fmt.name)

EXPORT_FORMATS.add(ExportFormat("llava", "llava.json", llava_record, _check_llava, _json_bytes, _read_json,
                      "relative to this folder: give the folder as LLaVA's --image_folder", image_key="image"))
EXPORT_FORMATS.add(ExportFormat("llamafactory", "data.json", sharegpt_record, _check_messages, _json_bytes, _read_json,
                      "relative to this folder, LLaMA-Factory's dataset_dir: run llamafactory-cli train train_lora.yaml here (its dataset_dir is .)",
                      companions=_llamafactory_info))
EXPORT_FORMATS.add(ExportFormat("swift", "data.jsonl", swift_record, _check_messages, _jsonl_bytes, _read_jsonl,
                      "relative to this folder: ms-swift opens a relative path from the directory it runs in, else under $ROOT_IMAGE_DIR; "
                      "run swift sft here or set ROOT_IMAGE_DIR to this folder"))
EXPORT_FORMATS.add(ExportFormat("trl", "data.jsonl", trl_record, _check_trl, _jsonl_bytes, _read_jsonl,
                      "relative to this folder: TRL opens no image paths itself and a relative path opens from the working directory; "
                      "load the images from here or join each path with this folder"))
EXPORT_FORMATS.add(ExportFormat("parquet", "data.parquet", parquet_record, _check_parquet, _parquet_bytes, _read_parquet, "relative to this folder"))

# the registry's names and data files as the callers read them (the CLI's and the pages' choices)
FORMATS = tuple(EXPORT_FORMATS)
DATA_FILES = {name: f.data_file for name, f in EXPORT_FORMATS.items()}


def export_format(name: Any) -> ExportFormat:
    """The registered format; an ExportError naming the known ones otherwise."""
    if name not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {name!r}; formats are {', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[name]


def validate(fmt: str, records: list[dict[str, Any]], *, root: Path | None = None) -> None:
    """Raise :class:`ExportError` naming up to ten records that break the format's rules."""
    check = export_format(fmt).check
    problems: list[str] = []
    ids: set[str] = set()
    for k, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(f"record {k}: not an object")
            continue
        check(record, f"record {k}" + (f" ({record['id']})" if isinstance(record.get("id"), str) else ""), problems, root)
        rid = record.get("id")
        if isinstance(rid, str):
            if rid in ids:
                problems.append(f"record {k}: duplicate id {rid}")
            ids.add(rid)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ExportError(f"{fmt} export is not valid: " + "; ".join(problems[:10]) + more)


# ---- image paths ---------------------------------------------------------------------------------------
def _map_images(fmt: str, record: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """The record with ``fn`` applied to each image path (LLaVA's ``image``, the others' ``images``)."""
    key = export_format(fmt).image_key
    value = record.get(key)
    if isinstance(value, str):
        return {**record, key: fn(value)}
    if isinstance(value, list):
        return {**record, key: [fn(p) if isinstance(p, str) else p for p in value]}
    return record


def _relative_to(base: Path, where: str) -> Callable[[str], str]:
    """An absolute image path as the path relative to ``base`` it stands for; refused outside ``base``."""
    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(base).as_posix()
        except ValueError:
            raise ExportError(f"{where}: image path {path!r} is not inside {base} (was the folder moved?)") from None
    return relative


def image_paths_note(fmt: str, absolute: bool = False) -> str:
    """How the format's trainer finds an image from a record's path (what the manifest and the CLI say)."""
    return ABSOLUTE_IMAGE_PATHS if absolute else export_format(fmt).image_paths


def data_files(fmt: str, records: list[dict[str, Any]], dataset_name: str) -> dict[str, bytes]:
    """The format's files (name -> bytes), besides images and the manifest."""
    f = export_format(fmt)
    return {f.data_file: f.write(records), **(f.companions(f.data_file, dataset_name) if f.companions else {})}


def read_records(fmt: str, folder: Path) -> list[dict[str, Any]]:
    f = export_format(fmt)
    return f.read(folder / f.data_file)


@dataclass
class ExportResult:
    folder: Path
    records: int
    images: int
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256


def write_export(
    out: Path,
    fmt: str,
    samples: list[ExportSample],
    *,
    sources: dict[str, Path],
    meta: dict[str, Any],
    ocr: bool = False,
    link: bool = False,
    force: bool = False,
    dataset_name: str = "vitpro",
    progress: Callable[[int], None] | None = None,
    extra_files: dict[str, bytes] | None = None,
    absolute_paths: bool = False,
) -> ExportResult:
    """Build, validate and write one export of ``samples`` to ``out``.

    ``sources`` maps each relative image path the samples use to the file to copy (or hard-link) there.
    ``meta`` (snapshot, filter, DuckLake version, models, prompts, trainer settings) goes into the manifest
    with every local path in it cut to its last name (``model_ids.scrub_paths``). ``extra_files`` (a
    trainer's config, e.g. ``train_lora.yaml``) are written beside the data and hashed like it.
    ``absolute_paths``: the records name each image by its absolute path in ``out`` (not relative to it).
    """
    builder = export_format(fmt).record
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another folder or pass --force to replace it")
    samples = sorted(samples, key=lambda s: s.sample_id)
    missing = sorted({p for s in samples for p in s.images if p not in sources or not Path(sources[p]).is_file()})
    if missing:
        raise ExportError(f"{len(missing)} image file(s) are missing from the store, e.g. {missing[0]}; nothing was written")
    records = [builder(s, ocr) for s in samples]
    validate(fmt, records)
    base = out.resolve()
    if absolute_paths:
        records = [_map_images(fmt, r, lambda p: str(base / p)) for r in records]
    files = data_files(fmt, records, dataset_name)
    clash = sorted(set(extra_files or {}) & (set(files) | {MANIFEST}))
    if clash:
        raise ExportError(f"extra file(s) {', '.join(clash)} would replace the export's own")
    files.update(extra_files or {})
    meta = scrub_paths(meta)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        hashes: dict[str, str] = {}
        for name, data in files.items():
            (staging / name).write_bytes(data)
            hashes[name] = hashlib.sha256(data).hexdigest()
        images = sorted({p for s in samples for p in s.images})
        for k, rel in enumerate(images):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if link:
                try:
                    os.link(sources[rel], target)
                except OSError:  # another file system: copy instead
                    shutil.copyfile(sources[rel], target)
            else:
                shutil.copyfile(sources[rel], target)
            hashes[rel] = file_sha256(target)
            if progress and (k % 200 == 0 or k == len(images) - 1):
                progress(k + 1)
        back = read_records(fmt, staging)  # what a trainer will read, read back
        if absolute_paths:  # the paths name the final folder; its files are in staging until the move
            back = [_map_images(fmt, r, _relative_to(base, f"record {k}")) for k, r in enumerate(back)]
        validate(fmt, back, root=staging)
        per_task: dict[str, int] = {}
        for s in samples:
            per_task[s.task] = per_task.get(s.task, 0) + 1
        manifest = {
            "format": fmt,
            "data_files": sorted(files),
            "records": len(records),
            "images": len(images),
            "multi_image_records": sum(1 for s in samples if len(s.images) > 1),
            "text_only_records": sum(1 for s in samples if not s.images),
            "per_task": dict(sorted(per_task.items())),
            "ocr_in_prompt": ocr,
            "prompt_layout": "one image: '<image>\\n' + question; several: '[k] <image>' lines, then '###'; OCR as 'OCR Tokens: ...' then '###'",
            "image_paths": image_paths_note(fmt, absolute_paths),
            "absolute_paths": absolute_paths,
            **meta,
            "files": dict(sorted(hashes.items())),
        }
        (staging / MANIFEST).write_bytes(_json_bytes(manifest))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, len(records), len(images), hashes)


def verify_export(folder: Path) -> dict[str, Any]:
    """Check an export folder as a trainer would meet it: the records obey the format's rules, every image
    is there (an export with absolute paths: in this very folder), and every file's sha256 is the
    manifest's. Returns the manifest; raises ExportError."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{folder}: no readable {MANIFEST} ({exc})") from None
    fmt = manifest.get("format")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"{folder}: the manifest names no known format")
    records = read_records(fmt, folder)
    if manifest.get("absolute_paths"):
        records = [_map_images(fmt, r, _relative_to(folder.resolve(), f"record {k}")) for k, r in enumerate(records)]
    validate(fmt, records, root=folder)
    if len(records) != manifest.get("records"):
        raise ExportError(f"{folder}: {len(records)} records, the manifest says {manifest.get('records')}")
    bad = [rel for rel, digest in manifest.get("files", {}).items() if not (folder / rel).is_file() or file_sha256(folder / rel) != digest]
    if bad:
        raise ExportError(f"{folder}: {len(bad)} file(s) differ from the manifest, e.g. {bad[0]}")
    return manifest
