"""Text read from product photos with rapidocr (ONNX models inside its wheel: no download, CPU).

The paper puts "OCR Tokens: ..." into its prompts; we keep the lines, their boxes and confidences per
image content (sha256), so an image that appears in many items is read once.
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np
from PIL import Image

ENGINES = ("rapidocr",)


@dataclass
class OcrResult:
    text: str
    n_boxes: int
    mean_confidence: float | None
    boxes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class RapidOcrEngine:
    """One model set per process (loading costs ~0.5 s); calls are serialised, the runtime is not re-entrant."""

    def __init__(self):
        self.name = f"rapidocr-{version('rapidocr')}"
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            # font_path: rapidocr downloads a font for drawing results when none is given; we never draw.
            self._engine = RapidOCR(params={"Global.font_path": "unused-no-drawing.ttf", "Global.log_level": "warning"})
        return self._engine

    def read(self, data: bytes) -> OcrResult:
        """OCR of encoded image bytes; raises ValueError for bytes that are not an image."""
        with Image.open(io.BytesIO(data)) as im:
            array = np.asarray(im.convert("RGB"))[:, :, ::-1].copy()  # rapidocr expects BGR like OpenCV
        start = time.perf_counter()
        with self._lock:
            out = self._load()(array)
        seconds = time.perf_counter() - start
        texts = list(out.txts or ())
        scores = [float(s) for s in (out.scores or ())]
        boxes_raw = out.boxes if out.boxes is not None else []
        boxes = [
            {"box": np.asarray(b).round(1).tolist(), "text": t, "score": round(s, 4)}
            for b, t, s in zip(boxes_raw, texts, scores)
        ]
        return OcrResult(
            text="\n".join(texts),
            n_boxes=len(texts),
            mean_confidence=(sum(scores) / len(scores)) if scores else None,
            boxes=boxes,
            seconds=seconds,
        )


_engines: dict[str, RapidOcrEngine] = {}


def get_engine(name: str = "rapidocr") -> RapidOcrEngine:
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; available: {', '.join(ENGINES)}")
    if name not in _engines:
        _engines[name] = RapidOcrEngine()
    return _engines[name]


def engine_label(name: str = "rapidocr") -> str:
    """The versioned name stored with each result, without loading any model."""
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; available: {', '.join(ENGINES)}")
    return f"rapidocr-{version('rapidocr')}"
