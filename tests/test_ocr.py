"""OCR on a real DuckLake store, jobs run in this process (no broker): which images a job reads (--limit,
--source, --where), what a reading keeps (words apart, confident lines), both engines, and the refusals
that must come before a job exists (no CUDA provider, no tesseract binary, an unknown field)."""
from __future__ import annotations

import importlib.util
import io
import json

import pytest
from PIL import Image, ImageDraw, ImageFont

from config.settings import load_settings
from curation import ocr
from curation.mapping import ColumnMapping
from db.reads import ocr_reads
from db.store import open_store
from jobs.ingest import IngestJob
from jobs.ocr import OcrJob

from .conftest import REPO
from .helpers import label_image, write
from .test_generation import _run_job  # plan, units and finalize of one job, here and in order


def _ingest(tmp_path, name: str, labels: dict[str, bytes]) -> None:
    """A CSV source ``name`` with one item per image (external id = the file's stem; .jpg unless named)."""
    root = tmp_path / name
    rows = ["id,title,img"]
    for file, data in labels.items():
        file = file if "." in file else f"{file}.jpg"
        write(root / file, data)
        rows.append(f"{file.split('.')[0]},Item {file},{file}")
    (root / "items.csv").write_text("\n".join(rows) + "\n")
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    params = IngestJob(source=str(root / "items.csv"), format="csv", mapping=mapping, name=name, image_root=str(root), redact=True).params()
    assert _run_job("ingest", params).status == "succeeded"


def _texts(lake) -> dict[str, str]:
    """external id -> stored OCR text."""
    return dict(lake.fetchall("SELECT it.external_id, o.text FROM items it JOIN images im USING (item_id) JOIN ocr o ON o.sha256 = im.sha256"))


def _lake():
    return open_store(load_settings().store)


# ---- which images ------------------------------------------------------------------------------------------
def test_limit_reads_exactly_n_images_then_the_rest(home, tmp_path):
    _ingest(tmp_path, "shelf", {f"p{i}": label_image(f"ACME {i}0{i}") for i in range(5)})
    job = _run_job("ocr", OcrJob(limit=3, batch_size=2).params())
    assert job.status == "succeeded" and job.counts["images_to_read"] == 3 and job.counts["images_read"] == 3
    lake = _lake()
    assert lake.scalar("SELECT count(*) FROM ocr") == 3
    rest = _run_job("ocr", OcrJob().params())
    assert rest.counts["images_to_read"] == 2 and lake.scalar("SELECT count(DISTINCT sha256) FROM ocr") == 5


def test_source_restricts_and_an_unknown_source_fails_the_job(home, tmp_path):
    _ingest(tmp_path, "shelf", {"a": label_image("ACME SHAMPOO"), "b": label_image("KESTREL")})
    _ingest(tmp_path, "labels", {"c": label_image("NORDBROOK"), "d": label_image("SUNVALE")})
    job = _run_job("ocr", OcrJob(source="labels").params())
    assert job.status == "succeeded" and job.counts["images_read"] == 2
    assert {k: v.upper() for k, v in _texts(_lake()).items()} == {"c": "NORDBROOK", "d": "SUNVALE"}
    missing = _run_job("ocr", OcrJob(source="nope").params())
    assert missing.status == "failed" and "no source named 'nope'" in missing.error and "labels, shelf" in missing.error


def test_where_tests_image_fields_and_unknown_fields_are_refused(home, tmp_path, cli):
    png = io.BytesIO()
    Image.open(io.BytesIO(label_image("PNG LABEL", size=(900, 240)))).save(png, format="PNG")
    _ingest(tmp_path, "shelf", {"small": label_image("SMALL"), "wide": label_image("WIDE LABEL", size=(900, 240)), "png.png": png.getvalue()})
    job = _run_job("ocr", OcrJob(where=["width >= 800", "format = jpeg"]).params())  # all must hold
    assert job.counts["images_read"] == 1 and set(_texts(_lake())) == {"wide"}
    assert _run_job("ocr", OcrJob(where=["bytes > 0", "format != JPEG"]).params()).counts["images_read"] == 1
    assert set(_texts(_lake())) == {"wide", "png"}

    with pytest.raises(ValueError, match="unknown image field 'colour'.*fields: width, height"):
        OcrJob(where=["colour = red"]).params()
    with pytest.raises(ValueError, match="format is text: use = or !="):
        OcrJob(where=["format > PNG"]).params()
    with pytest.raises(ValueError, match="width takes a number"):
        OcrJob(where=["width >= wide"]).params()
    with pytest.raises(ValueError, match="field op value"):
        OcrJob(where=["width; DROP TABLE ocr"]).params()
    out = cli("ocr", "--where", "colour = red", "--no-wait")
    assert out.returncode == 2 and "unknown image field 'colour'" in out.stderr


# ---- what a reading keeps ----------------------------------------------------------------------------------
def _two_lines(first: str, second: str) -> bytes:
    """A label with two lines in the demo's font; the recogniser runs them as one batch."""
    im = Image.new("RGB", (900, 260), (245, 240, 230))
    d = ImageDraw.Draw(im)
    d.text((30, 30), first, fill=(20, 20, 20), font=ImageFont.load_default(size=44))
    d.text((30, 160), second, fill=(120, 120, 110), font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_words_are_kept_apart():
    engine = ocr.get_engine()
    # both read glued ("DARKCHOCOLATETRUFFLES", "ACMESHAMPOO") before the space class was weighted
    assert engine.read(label_image("DARK CHOCOLATE TRUFFLES", size=(900, 240))).text == "DARK CHOCOLATE TRUFFLES"
    assert engine.read(_two_lines("ACME SHAMPOO", "Nordbrook Ground Coffee")).text.split("\n") == ["ACME SHAMPOO", "Nordbrook Ground Coffee"]


def test_min_confidence_drops_lines_and_texture_is_not_text(shared_data):
    # the bag's black lining (no text at all): rapidocr reads its pattern as a sign or two
    lining = (shared_data / "abo-samples" / "images" / "B0799CK52K" / "95f7ee92.jpg").read_bytes()
    everything = ocr.get_engine(ocr.OcrSettings(min_confidence=0.0)).read(lining)
    default = ocr.get_engine().read(lining)
    assert default.text == "" and default.dropped == everything.dropped + everything.n_boxes >= 1
    label = _two_lines("ACME SHAMPOO", "Nordbrook Ground Coffee")
    scores = [b["score"] for b in ocr.get_engine(ocr.OcrSettings(min_confidence=0.0)).read(label).boxes]
    strict = ocr.get_engine(ocr.OcrSettings(min_confidence=max(scores) - 1e-4)).read(label)
    assert strict.n_boxes == 1 and strict.dropped == 1 and all(b["score"] >= max(scores) - 1e-4 for b in strict.boxes)
    assert not ocr.keep_line("E", 0.8, 0.6) and ocr.keep_line("IT", 0.97, 0.6) and not ocr.keep_line("Vitamin E", 0.55, 0.6)


def test_the_label_names_what_changes_the_text_and_a_new_reading_replaces_the_old(home, tmp_path):
    spec, version = ocr.RapidOcrEngine, ocr.RapidOcrEngine.version()
    assert ocr.engine_label() == f"rapidocr-{version}/{ocr.RECIPE}"
    defaults = ocr.OcrSettings(side=spec.default_side, min_confidence=spec.default_min_confidence)
    assert ocr.engine_label(ocr.OcrSettings(threads=2)) == ocr.engine_label(defaults) == ocr.engine_label()
    assert ocr.engine_label(ocr.OcrSettings(side=640, min_confidence=0.3)) == f"rapidocr-{version}/{ocr.RECIPE} side=640 min_conf=0.3"
    _ingest(tmp_path, "shelf", {"a": label_image("ACME SHAMPOO")})
    _run_job("ocr", OcrJob().params())
    again = _run_job("ocr", OcrJob(threads=2).params())
    assert again.counts["images_to_read"] == 0  # threads change the speed, not the text
    other = _run_job("ocr", OcrJob(side=640).params())
    assert other.counts["images_read"] == 1
    assert _lake().fetchall("SELECT engine FROM ocr") == [(f"rapidocr-{version}/{ocr.RECIPE} side=640",)]


# ---- engines and devices -----------------------------------------------------------------------------------
def test_tesseract_reads_a_known_label_and_a_missing_binary_is_named(monkeypatch):
    result = ocr.get_engine(ocr.OcrSettings("tesseract")).read(label_image("ACME SHAMPOO\nNORDBROOK 500 g"))
    assert result.text.split("\n") == ["ACME SHAMPOO", "NORDBROOK 500 g"] and result.mean_confidence > 0.8
    assert OcrJob(engine="tesseract").params()["engine_label"].startswith("tesseract-5.")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ocr.OcrSetupError, match=r"make tesseract.*apt-get install -y tesseract-ocr"):
        OcrJob(engine="tesseract").params()


def test_cuda_is_refused_here_with_the_fix_and_would_run_on_the_gpu_queue():
    import onnxruntime

    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()  # this CPU machine
    with pytest.raises(ocr.OcrSetupError, match=r"CUDAExecutionProvider.*pip install onnxruntime-gpu==") as refused:
        OcrJob(device="cuda").params()
    assert onnxruntime.__version__ in str(refused.value)
    with pytest.raises(ValueError, match="runs on the CPU only"):
        OcrJob(engine="tesseract", device="cuda").params()
    assert OcrJob.queue_for({"device": "cuda"}) == "gpu" and OcrJob.queue_for(OcrJob().params()) == "cpu"


def test_status_counts_redactions_found_in_ocr_text(home, tmp_path, cli):
    _ingest(tmp_path, "notes", {"n": label_image("+1 415 555 0100\nhannah@example.com")})
    assert _run_job("ocr", OcrJob().params()).status == "succeeded"
    assert ocr_reads.ocr_redaction_totals(_lake()) == {"EMAIL": 1, "PHONE": 1}
    out = cli("status", "--json", check=True)
    assert json.loads(out.stdout)["ocr_redactions"] == {"EMAIL": 1, "PHONE": 1}


# ---- the bench's scores ------------------------------------------------------------------------------------
def test_bench_scores():
    spec = importlib.util.spec_from_file_location("bench_ocr", REPO / "bench" / "ocr.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.edit_distance("kitten", "sitting") == 3 and bench.edit_distance("", "abc") == 3
    assert bench.char_accuracy("ACME\nShampoo", "shampoo\nacme") == 1.0  # case and line order do not count
    assert bench.char_accuracy("", "") == 1.0 and bench.char_accuracy("", "MAAAN") == 0.0
    assert bench.word_f1("dark chocolate truffles", "DARKCHOCOLATE truffles") == pytest.approx(0.4)
    assert bench.junk_lines("STARTER", "STARTER\n园") == (1, 2)
