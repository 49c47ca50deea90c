"""Job kinds by name. Each module has KIND, QUEUE, prepare_params(), plan(), run() and finalize()."""
from . import aux_stats, clip_score, grounding, ingest, ocr

HANDLERS = {module.KIND: module for module in (ingest, ocr, clip_score, grounding, aux_stats)}
