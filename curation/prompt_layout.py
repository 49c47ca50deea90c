"""The user turn of every prompt, as the paper lays it out: images first, then OCR text, then the question.

One image: the image, a line break, then the text. Several images are numbered ``[1]``, ``[2]`` ... one per
line and the block is closed by ``###``, which made the paper's multi-image model less sensitive to image
order. With OCR, ``OCR Tokens: ...`` comes as a section of its own, closed by ``###`` (per image numbered
``[k]`` when there are several).

The turn is a list of chat content parts (``{"type": "image"}`` and ``{"type": "text", "text": ...}``), the
form a processor's ``apply_chat_template`` reads. The same parts build the exports' prompts (with an
``<image>`` tag where an image goes) and the prompts scored and trained on, so a model is tuned on the very
layout it is scored with. Pure functions, no model library.
"""
from __future__ import annotations

from typing import Sequence

OCR_PREFIX = "OCR Tokens: "
SECTION = "###"


def image_part() -> dict:
    return {"type": "image"}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def ocr_body(texts: Sequence[str] | str | None, n_images: int, first: int = 1) -> str:
    """The OCR section's text: one string as it is; per-image texts numbered ``[k]`` when there are
    several images (so the reader knows which photo said what), empty ones left out. ``first``: the
    number of the first of these images in the prompt (in-context examples' images come before)."""
    if texts is None:
        return ""
    if isinstance(texts, str):
        return texts.strip()
    cleaned = [t.strip() if t else "" for t in texts]
    if n_images > 1:
        return " ".join(f"[{k + first}] {t}" for k, t in enumerate(cleaned) if t)
    return " ".join(t for t in cleaned if t)


def user_parts(n_images: int, question: str, ocr: str = "") -> list[dict]:
    """The user turn's content parts; neighbouring text pieces are joined into one part."""
    pieces: list[str | None] = []  # None: an image goes here
    if n_images == 1:
        pieces += [None, "\n"]
    elif n_images > 1:
        for k in range(n_images):
            pieces += [f"[{k + 1}] ", None, "\n"]
        pieces.append(SECTION + "\n")
    if ocr:
        pieces.append(f"{OCR_PREFIX}{ocr}\n{SECTION}\n")
    pieces.append(question)
    parts: list[dict] = []
    for piece in pieces:
        if piece is None:
            parts.append(image_part())
        elif parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += piece
        elif piece:
            parts.append(text_part(piece))
    return parts


def flatten(parts: list[dict], image_tag: str) -> str:
    """The parts as one string with ``image_tag`` where each image goes (sharegpt and LLaVA exports)."""
    return "".join(image_tag if p["type"] == "image" else p["text"] for p in parts)


def conversation(parts: list[dict], answer: str | None) -> list[dict]:
    """Chat messages: the user turn, then the assistant's answer when there is one."""
    messages = [{"role": "user", "content": parts}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [text_part(answer)]})
    return messages
