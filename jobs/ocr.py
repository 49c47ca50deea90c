"""The OCR job's spec: which images to read, with which engine and settings. Runs on the ``cpu`` queue,
or on ``gpu`` with ``device="cuda"`` (rapidocr on onnxruntime's CUDA provider)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import about, check, param

from .registry import JobSpec, job_kind

DEFAULT_BATCH = 16
ENGINES = ("rapidocr", "tesseract")  # curation.ocr.ENGINES, named here so the command line need not import the engines


@job_kind("ocr")
@dataclass(frozen=True)
class OcrJob(JobSpec):
    QUEUE = "cpu"

    engine: str = param("rapidocr", choices=ENGINES, help="rapidocr reads photos best (bench/ocr.py); tesseract needs `make tesseract`.")
    batch_size: int = param(DEFAULT_BATCH, min=1, label="Images per batch", help="Images per work unit.")
    redact: bool = param(True, label="Redact personal data in the text read",
                         help="Redact names, addresses, phone numbers in the text read (labels can show them).")
    side: int | None = param(None, min=64, max=4096, help="Short side (px) a photo is scaled up to before text is looked for "
                             "[rapidocr 736, tesseract 1024]; changing it reads the images again.")
    min_confidence: float | None = param(None, min=0.0, max=1.0, help="Drop lines read with less [rapidocr 0.6, tesseract 0.5]; "
                                         "changing it reads the images again.")
    threads: int = param(1, min=1, max=64, help="Threads per worker process (a worker runs one process per core).")
    device: str = param("cpu", choices=("cpu", "cuda"), help="cuda: rapidocr on onnxruntime's CUDA provider (onnxruntime-gpu), on the gpu queue.")
    source: str | None = param(None, help="Only images of items of this source (its name, as `vitpro status` counts them).")
    where: list[str] | None = param(None, help="Only images where FIELD OP VALUE holds, e.g. 'width >= 800' or 'format = PNG'; all must hold. "
                                    "Fields: width, height, pixels, bytes, format, position.")
    limit: int | None = param(None, min=1, help="Read at most N images not read yet (sha256 order).")
    engine_label: str = param("", derived=True, help="The engine, its version and the settings that change the text: the readings' key.")

    def queue(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    def settings(self):
        from curation.ocr import OcrSettings

        return OcrSettings(engine=self.engine, side=self.side, min_confidence=self.min_confidence, threads=self.threads, device=self.device)

    def resolve(self) -> "OcrJob":
        """Every mistake a worker would only find later is refused here: an unknown engine or field, a
        missing tesseract binary, --device cuda without onnxruntime's CUDA provider."""
        from curation.ocr import check_available, engine_label, parse_conditions

        check(self)
        try:
            settings = self.settings().resolved()
            check_available(settings)
        except ValueError as exc:
            raise about("device" if "cuda" in str(exc) else "engine", exc) from None
        try:
            conditions = parse_conditions(self.where)
        except ValueError as exc:
            raise about("where", exc) from None
        return replace(self, engine=settings.engine, side=settings.side, min_confidence=settings.min_confidence, threads=settings.threads,
                       device=settings.device, where=[str(c) for c in conditions], engine_label=engine_label(settings))
