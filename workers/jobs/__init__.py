"""Job kinds by name. Each module has KIND, QUEUE, prepare_params(), plan(), run() and finalize()."""
from . import ingest, ocr

HANDLERS = {module.KIND: module for module in (ingest, ocr)}
