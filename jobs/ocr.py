"""The OCR job's spec: which images to read, with which engine and settings. Runs on the ``cpu`` queue,
or on ``gpu`` with ``device="cuda"`` (rapidocr on onnxruntime's CUDA provider)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import JobSpec, register

DEFAULT_BATCH = 16


@register("ocr")
@dataclass(frozen=True)
class OcrJob(JobSpec):
    QUEUE = "cpu"

    engine: str = "rapidocr"
    batch_size: int = DEFAULT_BATCH
    redact: bool = True
    side: int | None = None
    min_confidence: float | None = None
    threads: int = 1
    device: str = "cpu"
    source: str | None = None
    where: list[str] | tuple[str, ...] | None = None
    limit: int | None = None

    @classmethod
    def queue_for(cls, params: dict[str, Any]) -> str:
        return "gpu" if (params.get("settings") or {}).get("device") == "cuda" else "cpu"

    def params(self) -> dict[str, Any]:
        """Every mistake a worker would only find later is refused here: an unknown engine or field, a
        missing tesseract binary, --device cuda without onnxruntime's CUDA provider."""
        from curation.ocr import OcrSettings, check_available, engine_label, parse_conditions

        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be at least 1")
        settings = OcrSettings(engine=self.engine, side=self.side, min_confidence=self.min_confidence, threads=self.threads, device=self.device).resolved()
        check_available(settings)
        conditions = parse_conditions(self.where)
        return {
            "engine": settings.engine, "engine_label": engine_label(settings), "settings": settings.to_params(),
            "batch_size": self.batch_size, "redact": self.redact, "source": self.source,
            "where": [str(c) for c in conditions], "limit": self.limit,
        }
