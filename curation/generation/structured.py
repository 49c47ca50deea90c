"""Structured outputs (``--structured``): the pairs a request asks for, as a JSON schema the server must follow.

OpenAI's ``response_format: {"type": "json_schema", ...}`` and vLLM's structured outputs (the same field on
its OpenAI-compatible server) constrain decoding to the schema, so a reply is never free text around the
pairs, never a missing tag, never a cut pair that still parses. For attribute extraction the answer is an
object whose keys are the item's own attribute keys and the paper's, each a string: the model cannot invent
a key. The parser (parse.py, which reads ``{"pairs": [...]}``) still validates every pair: a schema says
what shape a reply has, not whether it is true.
"""
from __future__ import annotations

from typing import Any

from .facts import canonical_key
from .tasks import ATTRIBUTE_KEYS

# Appended to the user message: the prompt asks for tagged pairs, and the schema must win over that.
STRUCTURED_NOTE = ('\n\nReply with JSON only, of this shape: {"pairs": [{"question": "...", "answer": ...}, ...]}; '
                   "the rules above about what to write still hold.")


def attribute_keys(request) -> list[str]:
    """The keys an attribute answer may have: the item's own (as the store spells them), then the paper's."""
    own = [canonical_key(k) for k in request.context.product_attributes()]
    return list(dict.fromkeys([*own, *ATTRIBUTE_KEYS]))


def pair_schema(request) -> dict[str, Any]:
    if request.task == "attribute_extraction":
        keys = attribute_keys(request)
        answer: dict[str, Any] = {"type": "object", "properties": {k: {"type": "string"} for k in keys}, "required": keys,
                                  "additionalProperties": False}
    else:
        answer = {"type": "string"}
    pair = {"type": "object", "properties": {"question": {"type": "string"}, "answer": answer}, "required": ["question", "answer"],
            "additionalProperties": False}
    return {"type": "object", "properties": {"pairs": {"type": "array", "items": pair}}, "required": ["pairs"], "additionalProperties": False}


def response_format(request) -> dict[str, Any]:
    """The request body's ``response_format`` for one request (its schema depends on the task and the item)."""
    return {"type": "json_schema", "json_schema": {"name": f"{request.task}_pairs", "strict": True, "schema": pair_schema(request)}}
