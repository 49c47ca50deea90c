"""A sample as chat messages, rendered by the checkpoint's own chat template, with the exact character
spans of the OCR text, the question and the answer in the rendered prompt.

The template is the checkpoint's (``processor.chat_template``); a checkpoint saved without one gets the
family's documented layout from ``resources/chat_templates/<family>.jinja`` (written by us from the format's
documentation) and says so. Spans are found without guessing: the messages are rendered once with a
private-use character standing in for each piece of text, the stand-ins are replaced by the text (which
gives the spans), and the result must equal the template's rendering of the real messages; a template that
rewrites the user's text is refused rather than scored on wrong positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Callable

from .. import prompt_layout

# Unicode private-use characters: no tokenizer gives them meaning and no data here contains them
# (``safe_text`` would make such a character in data harmless anyway: it only ever stands in here).
STAND_INS = {"ocr": "\ue000", "question": "\ue001", "answer": "\ue002"}


class TemplateError(ValueError):
    """The chat template cannot render this sample as the layout needs (a code for the per-sample error)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: dict[str, tuple[int, int]]  # "ocr" / "question" / "answer" -> [start, end) in ``text``


def family_template(family: str) -> str | None:
    """The family's documented conversation layout, as a Jinja chat template (None if we wrote none)."""
    try:
        return resources.files("curation").joinpath("resources", "chat_templates", f"{family}.jinja").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None


def messages(n_images: int, question: str, answer: str | None, ocr: str, follow_up: str | None = None) -> list[dict]:
    """The sample as chat messages in the paper's layout (``prompt_layout``); ``follow_up``: a second user
    turn after the answer (the VLM judge's question about it)."""
    out = prompt_layout.conversation(prompt_layout.user_parts(n_images, question, ocr), answer)
    if follow_up is not None:
        out.append({"role": "user", "content": [prompt_layout.text_part(follow_up)]})
    return out


def render(apply: Callable[[list[dict], bool], str], n_images: int, question: str, answer: str | None, ocr: str,
           follow_up: str | None = None) -> Rendered:
    """``apply(messages, add_generation_prompt)`` is the template. ``answer=None`` renders the prompt up to
    where the assistant's answer starts (what evaluation generates from). ``follow_up``: the answer, then
    this user turn, then the prompt up to where the assistant's reply to it starts."""
    # the pieces this rendering holds: the question always, the OCR text and the answer when there are some
    pieces = {"question": question, **({"ocr": ocr} if ocr else {}), **({"answer": answer} if answer is not None else {})}
    stand_in_msgs = messages(n_images, STAND_INS["question"], STAND_INS["answer"] if "answer" in pieces else None, STAND_INS["ocr"] if ocr else "",
                             follow_up)
    generation = answer is None or follow_up is not None
    skeleton = apply(stand_in_msgs, generation)
    found = []
    for name in pieces:
        count = skeleton.count(STAND_INS[name])
        if count != 1:
            raise TemplateError("chat_template", f"the chat template renders the {name} {count} times, not once: it cannot be scored or trained on")
        found.append((skeleton.index(STAND_INS[name]), name))
    text, spans, last = [], {}, 0
    length = 0
    for at, name in sorted(found):
        chunk = skeleton[last:at]
        text.append(chunk)
        length += len(chunk)
        spans[name] = (length, length + len(pieces[name]))
        text.append(pieces[name])
        length += len(pieces[name])
        last = at + 1
    text.append(skeleton[last:])
    result = "".join(text)
    if apply(messages(n_images, question, answer, ocr, follow_up), generation) != result:
        raise TemplateError("chat_template", "the chat template changes the user's text (it trims or rewrites it): token positions could not be trusted")
    return Rendered(result, spans)
