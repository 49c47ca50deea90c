"""Each VLM family's own first token of an answer "yes" and of an answer "no": what the objective
benchmark's log-probability mode (trainer/evaluate.py) and the VLM judge (curation/judge.py) read the
model's next-token distribution at. Found through the checkpoint's own chat template and processor, never
assumed: a template may put a space before the answer (" Yes") or none ("Yes")."""
from __future__ import annotations

from .base import Sample, VLMAdapter

ANSWER_SPELLINGS = {"yes": ("Yes", "yes"), "no": ("No", "no")}


class AnswerTokensError(ValueError):
    """A tokenizer in which "yes" and "no" cannot be told apart by their first token (or, asked for whole
    tokens, writes a spelling in more than one)."""


def answer_token_groups(adapter: VLMAdapter, *, whole: bool = False) -> dict[str, list[int]]:
    """The family's own first token of each spelling of "yes" and "no": a sample whose answer is that
    spelling goes through the adapter's chat template and processor, and the token right after the
    generation prompt is taken (what the model would generate first). Deduplicated; a token both
    answers start with (a bare space) says nothing and is left out of both. ``whole``: every spelling must
    be one token (the judge's rule: a first piece such as "Y" would also start other words)."""
    from PIL import Image

    image = Image.new("RGB", (64, 64), (128, 128, 128))
    question = "Answer in a single word: yes or no.\nIs this a product photo?"
    prompt = adapter.encode_prompt(Sample([image], question, "")).input_ids
    groups: dict[str, list[int]] = {}
    for label, spellings in ANSWER_SPELLINGS.items():
        ids = []
        for spelling in spellings:
            full = adapter.encode(Sample([image], question, spelling))
            if whole and len(full.segments["answer"]) != 1:
                raise AnswerTokensError(f"the {adapter.family} tokenizer writes the reply {spelling!r} as {len(full.segments['answer'])} tokens, "
                                        "not one")
            if full.input_ids[: len(prompt)] == prompt and len(full.input_ids) > len(prompt):
                ids.append(full.input_ids[len(prompt)])
            else:  # a template that renders the prompt differently with an answer: the answer's first token
                ids.append(full.input_ids[full.segments["answer"][0]])
        groups[label] = sorted(set(ids))
    # a token both answers can start with (a bare space before a word the tokenizer does not hold whole)
    # tells neither: dropped from both
    shared = set(groups["yes"]) & set(groups["no"])
    groups = {label: [t for t in ids if t not in shared] for label, ids in groups.items()}
    if not all(groups.values()):
        raise AnswerTokensError(f"{adapter.family}: 'yes' and 'no' start with the same token(s) {sorted(shared)} in this tokenizer; "
                                "use --objective-mode generate")
    return groups
