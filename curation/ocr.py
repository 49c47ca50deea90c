"""Text read from product photos: rapidocr (ONNX models inside its wheel: no download; CPU, or CUDA with
onnxruntime-gpu) by default, Debian's Tesseract as the other engine.

The paper puts "OCR Tokens: ..." into its prompts; we keep the lines, their boxes and confidences per
image content (sha256), so an image that appears in many items is read once. ``bench/ocr.py`` measured
the defaults below on the ABO photos and the demo's photos (docs/benchmarks.md has the table).
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from typing import Any

import numpy as np
from PIL import Image

from config.registry import Registry

DEFAULT_ENGINE = "rapidocr"
# Bumped when what we do around an engine changes its output (spaces, dropped lines): a store re-reads
# its images once under the new label instead of mixing two recipes. r1 was the plain rapidocr call.
RECIPE = "r2"


class OcrSetupError(ValueError):
    """The machine cannot run the asked-for engine or device; the message names the fix."""


@dataclass(frozen=True)
class OcrSettings:
    """What a reading is made with. ``side`` and ``min_confidence`` change the text (they go into the
    stored label when not the engine's default); ``threads`` and ``device`` only change the speed."""

    engine: str = DEFAULT_ENGINE
    # the short side (px) a photo is scaled up to, at least, before text is looked for (rapidocr's
    # Det.limit_side_len): small print on a wide label needs it, a photo already that big is not scaled
    side: int | None = None  # None: the engine's default
    min_confidence: float | None = None  # lines read with less are dropped; None: the engine's default
    threads: int = 1  # per process: a worker runs one process per core, so 1 uses every core once
    device: str = "cpu"  # cpu | cuda (rapidocr only: onnxruntime's CUDA provider)

    def resolved(self) -> "OcrSettings":
        """The same settings with the engine's defaults filled in; unknown engines and bad values refused."""
        spec = ENGINES.get(self.engine)
        if spec is None:
            raise ValueError(f"unknown OCR engine {self.engine!r}; available: {', '.join(ENGINES)}")
        out = replace(
            self,
            side=spec.default_side if self.side is None else int(self.side),
            min_confidence=spec.default_min_confidence if self.min_confidence is None else float(self.min_confidence),
            threads=int(self.threads),
        )
        if not 64 <= out.side <= 4096:
            raise ValueError(f"side must be 64..4096 px, got {out.side}")
        if not 0.0 <= out.min_confidence <= 1.0:
            raise ValueError(f"min confidence must be 0..1, got {out.min_confidence}")
        if out.threads < 1:
            raise ValueError("threads must be at least 1")
        if out.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {out.device!r}")
        if out.device == "cuda" and not spec.cuda:
            raise ValueError(f"the {out.engine} engine runs on the CPU only; the cuda device is for rapidocr")
        return out

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "OcrSettings":
        return cls(**(params or {})).resolved()


@dataclass
class OcrResult:
    text: str
    n_boxes: int
    mean_confidence: float | None
    boxes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    dropped: int = 0  # lines read but under the confidence threshold (or noise, see keep_line)


def _to_result(lines: list[tuple[str, float, list]], min_confidence: float, seconds: float) -> OcrResult:
    lines = [(clean_line(t), s, b) for t, s, b in lines]
    kept = [(t, s, b) for t, s, b in lines if keep_line(t, s, min_confidence)]
    boxes = [{"box": np.asarray(b, dtype=float).round(1).tolist(), "text": t, "score": round(s, 4)} for t, s, b in kept]
    scores = [s for _, s, _ in kept]
    return OcrResult(
        text="\n".join(t for t, _, _ in kept),
        n_boxes=len(kept),
        mean_confidence=(sum(scores) / len(scores)) if scores else None,
        boxes=boxes,
        seconds=seconds,
        dropped=len(lines) - len(kept),
    )


_ALNUM = re.compile(r"[A-Za-z0-9]")
# Lines with fewer Latin letters and digits than this ("E", "1 1" off a bulb's pins, one CJK sign read
# off a bag's lining) must be read with SURE confidence to be kept.
SHORT_LINE = 3
SURE = 0.9


def clean_line(text: str) -> str:
    """Spaces collapsed: weighting the space class leaves runs of them where print is sparse."""
    return " ".join(text.split())


def keep_line(text: str, score: float, min_confidence: float) -> bool:
    """A line is kept when read with enough confidence. On photos without text both engines "read"
    textures (a shoe's mesh as "MAAAN", a bag's lining as a CJK sign); those come with low scores, or
    are a letter or two long, which must then be read with SURE confidence (the bundled recogniser's
    alphabet is mostly Chinese signs; the catalogs are Latin-script)."""
    if not text or score < min_confidence:
        return False
    if len(_ALNUM.findall(text)) < SHORT_LINE:
        return score >= max(min_confidence, SURE)
    return True


MAX_SIDE = 4096  # no side scaled past this (a very long strip would otherwise grow without bound)


def upscale(size: tuple[int, int], side: int) -> float:
    """The factor that brings the short side up to ``side`` (never down), the long side kept <= MAX_SIDE."""
    w, h = size
    return max(1.0, min(side / min(w, h), MAX_SIDE / max(w, h)))


def _decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


# ---- rapidocr -------------------------------------------------------------------------------------------
# The recogniser (PP-OCRv4, Chinese + English) often skips the space between words ("DARKCHOCOLATETRUFFLES"):
# at the gap its space class gets a probability of 0.01-0.3 and the CTC blank wins. Weighting the space
# class up before the per-frame argmax keeps the words apart without changing letters. bench/ocr.py, words
# found: ABO photos 0.64 -> 0.74, demo photos 0.66 -> 1.00. At 32 a two-line label still read "ACMESHAMPOO";
# from ~300 words start to split ("TRUFFL ES"). rapidocr's own word boxes split only where it already put
# a space (or at a frame gap wider than glued print ever has), and column gaps in the crop were no better.
SPACE_BIAS = 100.0


def _rapidocr_classes():
    """Subclasses of rapidocr's pieces, made on first use (importing rapidocr costs ~0.3 s)."""
    import cv2
    from rapidocr import RapidOCR
    from rapidocr.ch_ppocr_det.utils import DetPreProcess
    from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

    class SpacedDecode(CTCLabelDecode):
        """CTC decoding with the space class weighted. A line's confidence is the mean probability of its
        letters (spaces left out): a space the weight brought in says nothing about the letters, and
        texture read as letters and spaces ("s eed eadsa d") must not pass for text on its spaces."""

        def __call__(self, preds, return_word_box=False, **kwargs):
            space = len(self.character) - 1  # rapidocr appends " " last (blank is 0)
            weighted = preds.copy()
            weighted[:, :, space] *= SPACE_BIAS
            idx = weighted.argmax(axis=2)
            prob = np.take_along_axis(preds, idx[:, :, None], axis=2)[:, :, 0]
            lines, words = self.decode(
                idx, prob, return_word_box, kwargs.get("wh_ratio_list", (1.0,)), kwargs.get("max_wh_ratio", 1.0), remove_duplicate=True
            )
            kept = np.ones_like(idx, dtype=bool)
            kept[:, 1:] = idx[:, 1:] != idx[:, :-1]  # CTC: a repeated frame is one character
            letters = kept & (idx != 0) & (idx != space)
            scores = [float(prob[b][letters[b]].mean()) if letters[b].any() else 0.0 for b in range(len(idx))]
            return [(text, round(score, 5)) for (text, _), score in zip(lines, scores)], words

    class ShortSideUp(DetPreProcess):
        """rapidocr's own detection resize (short side up to limit_side_len, never down) with the long
        side kept <= MAX_SIDE: a 1024x100 strip would otherwise go to the detector at 7536x736."""

        def resize(self, img):
            h, w = img.shape[:2]
            ratio = upscale((w, h), self.limit_side_len)
            rh, rw = (max(32, int(round(int(n * ratio) / 32) * 32)) for n in (h, w))  # rapidocr's rounding
            return cv2.resize(img, (rw, rh))

    class FixedRapidOCR(RapidOCR):
        """rapidocr 3.4.2 drops lines read as empty from the texts and boxes but not from the scores, so
        every score after an empty line belonged to the next line (a clear "STARTER" scored 0.0)."""

        def build_final_output(self, ori_img, det_res, cls_res, rec_res, cropped_img_list, op_record):
            if rec_res.txts is not None and det_res.boxes is not None and det_res.scores is not None:
                rec_res.scores = [s for t, s in zip(rec_res.txts, rec_res.scores) if t.strip()]
            return super().build_final_output(ori_img, det_res, cls_res, rec_res, cropped_img_list, op_record)

    return FixedRapidOCR, SpacedDecode, ShortSideUp


def cuda_provider_problem() -> str | None:
    """Why onnxruntime cannot run on CUDA here (None when it can)."""
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        return None
    return (
        f"--device cuda needs onnxruntime's CUDAExecutionProvider; this onnxruntime {onnxruntime.__version__} has "
        f"{', '.join(providers)} only. On the GPU machine: pip uninstall -y onnxruntime && "
        f"pip install onnxruntime-gpu=={onnxruntime.__version__} (it must match the CUDA and cuDNN installed)"
    )


# engine name -> its class (each below adds itself under its ``name``)
ENGINES: Registry[type] = Registry("OCR engine", key=lambda cls: cls.name)


@ENGINES.add
class RapidOcrEngine:
    """One model set per process and setting (loading costs ~0.5 s); calls are serialised, the runtime
    is not re-entrant."""

    name = "rapidocr"
    default_side = 736  # rapidocr's own; bench/ocr.py: 480 is faster on wide labels and reads less of them
    default_min_confidence = 0.6
    cuda = True

    def __init__(self, settings: OcrSettings):
        self.settings = settings
        self._engine = None
        self._lock = threading.Lock()

    @staticmethod
    def version() -> str:
        return version("rapidocr")

    def _load(self):
        if self._engine is None:
            s = self.settings
            if s.device == "cuda" and (problem := cuda_provider_problem()):
                raise OcrSetupError(problem)
            FixedRapidOCR, SpacedDecode, ShortSideUp = _rapidocr_classes()
            engine = FixedRapidOCR(
                params={
                    # rapidocr downloads a font for drawing results when none is given; we never draw.
                    "Global.font_path": "unused-no-drawing.ttf",
                    "Global.log_level": "error",  # "no text found" is an answer, not a warning
                    "EngineConfig.onnxruntime.intra_op_num_threads": s.threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    "EngineConfig.onnxruntime.use_cuda": s.device == "cuda",
                    "Det.limit_side_len": s.side,
                }
            )
            engine.text_rec.postprocess_op.__class__ = SpacedDecode  # same dictionary, our decoding
            det = engine.text_det
            resize = ShortSideUp(s.side, "min", det.mean, det.std)
            det.get_preprocess = lambda max_wh: resize
            if s.device == "cuda":
                # onnxruntime falls back to the CPU when the CUDA libraries do not load; say so instead
                providers = det.session.session.get_providers()
                if "CUDAExecutionProvider" not in providers:
                    raise OcrSetupError(f"onnxruntime-gpu could not start CUDA here (providers {', '.join(providers)}); check the CUDA and cuDNN libraries")
            self._engine = engine
        return self._engine

    def read(self, data: bytes) -> OcrResult:
        """OCR of encoded image bytes; raises for bytes that are not an image."""
        array = np.asarray(_decode_rgb(data))[:, :, ::-1].copy()  # rapidocr expects BGR like OpenCV
        start = time.perf_counter()
        with self._lock:
            out = self._load()(array, text_score=0.0)  # every line comes back; keep_line decides
        seconds = time.perf_counter() - start
        boxes = out.boxes if out.boxes is not None else []
        lines = [(t, float(s), b) for b, t, s in zip(boxes, out.txts or (), out.scores or ())]
        return _to_result(lines, self.settings.min_confidence, seconds)


# ---- Tesseract ------------------------------------------------------------------------------------------
TESSERACT_MISSING = (
    "the tesseract engine needs Debian's Tesseract: `make tesseract` (apt-get install -y tesseract-ocr), "
    "or use --engine rapidocr"
)


def tesseract_binary() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise OcrSetupError(TESSERACT_MISSING)
    return path


@ENGINES.add
class TesseractEngine:
    """The ``tesseract`` command (one process per image, TSV out for word confidences), English model,
    automatic page segmentation. It reads print on a flat label well once scaled up, and misses text on
    photos (turned straps, embossed brands): bench/ocr.py."""

    name = "tesseract"
    default_side = 1024  # bench/ocr.py: at 736 more junk on the demo photos, at 2048 fewer characters
    default_min_confidence = 0.5
    cuda = False
    psm = "3"
    lang = "eng"

    def __init__(self, settings: OcrSettings):
        self.settings = settings

    @staticmethod
    def version() -> str:
        out = subprocess.run([tesseract_binary(), "--version"], capture_output=True, text=True, timeout=30)
        first = (out.stdout or out.stderr).split("\n", 1)[0]  # "tesseract 5.3.0"
        return first.split()[-1] if first.strip() else "unknown"

    def read(self, data: bytes) -> OcrResult:
        binary = tesseract_binary()
        im = _decode_rgb(data).convert("L")
        scale = upscale(im.size, self.settings.side)
        if scale != 1.0:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        env = dict(os.environ, OMP_THREAD_LIMIT=str(self.settings.threads))
        start = time.perf_counter()
        proc = subprocess.run(
            [binary, "stdin", "stdout", "-l", self.lang, "--psm", self.psm, "tsv"],
            input=buf.getvalue(), capture_output=True, env=env, timeout=300,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"tesseract exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
        return _to_result(self._lines(proc.stdout.decode("utf-8", errors="replace"), scale), self.settings.min_confidence, seconds)

    @staticmethod
    def _lines(tsv: str, scale: float) -> list[tuple[str, float, list]]:
        """Words (level 5) grouped into Tesseract's lines; a line's score is its words' mean confidence,
        its box their union, in the original image's pixels."""
        lines: dict[tuple, list[dict]] = {}
        for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
            if row.get("level") != "5" or not (row.get("text") or "").strip() or float(row["conf"]) < 0:
                continue
            lines.setdefault((row["page_num"], row["block_num"], row["par_num"], row["line_num"]), []).append(row)
        out = []
        for words in lines.values():
            left = min(int(w["left"]) for w in words)
            top = min(int(w["top"]) for w in words)
            right = max(int(w["left"]) + int(w["width"]) for w in words)
            bottom = max(int(w["top"]) + int(w["height"]) for w in words)
            box = (np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=float) / scale).tolist()
            score = sum(float(w["conf"]) for w in words) / len(words) / 100.0
            out.append((" ".join(w["text"].strip() for w in words), score, box))
        return out


_engines: dict[OcrSettings, Any] = {}


def get_engine(name_or_settings: str | OcrSettings = DEFAULT_ENGINE):
    """The process's engine for these settings (models loaded once per process and setting)."""
    settings = name_or_settings if isinstance(name_or_settings, OcrSettings) else OcrSettings(engine=name_or_settings)
    settings = settings.resolved()
    if settings not in _engines:
        _engines[settings] = ENGINES[settings.engine](settings)
    return _engines[settings]


def engine_label(name_or_settings: str | OcrSettings = DEFAULT_ENGINE) -> str:
    """The versioned name stored with each result, without loading any model: engine, version, recipe,
    and the settings that change the text where they differ from the engine's defaults (so a reading with
    other settings is a reading of its own, and the defaults' label never changes with them)."""
    settings = name_or_settings if isinstance(name_or_settings, OcrSettings) else OcrSettings(engine=name_or_settings)
    s = settings.resolved()
    spec = ENGINES[s.engine]
    label = f"{s.engine}-{spec.version()}/{RECIPE}"
    extra = []
    if s.side != spec.default_side:
        extra.append(f"side={s.side}")
    if s.min_confidence != spec.default_min_confidence:
        extra.append(f"min_conf={s.min_confidence:g}")
    return label + (" " + " ".join(extra) if extra else "")


def check_available(settings: OcrSettings) -> None:
    """Refuse, with the fix, what would fail in every unit of a job: a missing binary, no CUDA provider."""
    s = settings.resolved()
    if s.engine == "tesseract":
        tesseract_binary()
    if s.device == "cuda" and (problem := cuda_provider_problem()):
        raise OcrSetupError(problem)


# ---- which images: --where over image fields -------------------------------------------------------------
# name -> (SQL over the images table aliased i, kind). Only these reach SQL; values are bound parameters.
IMAGE_FIELDS: dict[str, tuple[str, str]] = {
    "width": ("i.width", "number"),
    "height": ("i.height", "number"),
    "pixels": ("(CAST(i.width AS BIGINT) * i.height)", "number"),
    "bytes": ("i.n_bytes", "number"),
    "n_bytes": ("i.n_bytes", "number"),
    "format": ("upper(i.format)", "text"),  # JPEG, PNG, WEBP, ...
    "position": ("i.position", "number"),  # order of the image within its item, from 0
}
_OPS = {">=": ">=", "<=": "<=", "!=": "!=", "==": "=", "=": "=", ">": ">", "<": "<"}
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class ImageCondition:
    """One ``field op value`` test on an image (``width >= 800``, ``format = PNG``)."""

    field: str
    op: str
    value: float | str

    @classmethod
    def parse(cls, text: str) -> "ImageCondition":
        m = _CONDITION.match(text or "")
        if not m:
            raise ValueError(f"cannot read condition {text!r}: write `field op value`, e.g. 'width >= 800' (ops: >= <= > < = !=)")
        name, op, raw = m.group(1).lower(), _OPS[m.group(2)], m.group(3).strip().strip("'\"")
        if name not in IMAGE_FIELDS:
            raise ValueError(f"unknown image field {name!r} in {text!r}; fields: {', '.join(IMAGE_FIELDS)}")
        if not raw:
            raise ValueError(f"condition {text!r} has no value")
        if IMAGE_FIELDS[name][1] == "text":
            if op not in ("=", "!="):
                raise ValueError(f"{name} is text: use = or != in {text!r}")
            return cls(name, op, raw.upper())
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} takes a number, got {raw!r} in {text!r}") from None
        return cls(name, op, value)

    def sql(self) -> tuple[str, float | str]:
        """A SQL test with one ``?`` for the value, from the whitelist only."""
        return f"{IMAGE_FIELDS[self.field][0]} {self.op} ?", self.value

    def __str__(self) -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"{self.field} {self.op} {value}"


def parse_conditions(texts: list[str] | tuple[str, ...] | None) -> list[ImageCondition]:
    return [ImageCondition.parse(t) for t in (texts or ())]
