"""The keys near-duplicate results are stored under (no heavy imports: the command line and the job specs read them)."""
from __future__ import annotations

HASH_VERSION = "v1"  # bumped when a hash function changes its output: the store hashes its images again


def method_label(method: str) -> str:
    """The hashes' key in the store (image_hashes.method): the function and its version."""
    return f"{method}-{HASH_VERSION}"


def grouping_id(method: str, threshold: float) -> str:
    """The dup_* stats' model id: one grouping per method and threshold (bits for a hash, the least cosine for clip)."""
    return f"{method}:{threshold:g}"
