"""Job kinds by name. Each module has KIND, QUEUE, prepare_params(), plan(), run() and finalize()."""
from . import ablate, aux_stats, clip_score, evaluate, export, generate, grounding, ingest, ocr, train

HANDLERS = {module.KIND: module for module in (ingest, ocr, clip_score, grounding, aux_stats, generate, export, train, evaluate, ablate)}


def queue_of(kind: str, params: dict) -> str:
    """The queue a job runs on: the kind's own, or the one its parameters call for (a local model: gpu)."""
    handler = HANDLERS[kind]
    return handler.queue_for(params) if hasattr(handler, "queue_for") else handler.QUEUE
