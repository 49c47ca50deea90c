"""The VLM as judge: does the image show what the answer says? The probability of "yes" against "no" as the
model's next token after a fixed question about the answer (``judge_yes``).

The question is a second user turn after the answer, in the same conversation that VisAttnScore scores:
the sample is rendered by the checkpoint's chat template as user (images, OCR text, question), assistant
(the answer), user (the judge's question), then the assistant prefix; the logits at that last position give
the verdict. Attention is causal, so nothing after the answer changes a token of it or before it: A(t) and
the gain's with-image log-probabilities come from the same forward pass, unchanged, and the judge costs the
few tokens of its turn, not a second pass over the images.

"yes" and "no" are each model's own spelling: the first token of an assistant reply "Yes" (and "yes"), and
"No" (and "no"), as this checkpoint's template and tokenizer write it; a spelling that is not one token is
refused (a per-sample error) rather than approximated. The probability is renormalised over the four:
``judge_yes = p(yes) / (p(yes) + p(no))``; ``judge_mass = p(yes) + p(no)`` says how much of the model's
next-token mass went to either (a random or unsuited model puts little there).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .vlm.answer_tokens import AnswerTokensError, answer_token_groups
from .vlm.base import SampleError

# our wording, versioned like the generation prompts: a change of wording is a new version of the score
JUDGE_QUESTION = "Does the image show what your answer says? Answer yes or no."
JUDGE_VERSION = hashlib.sha256(JUDGE_QUESTION.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class JudgeTokens:
    yes: tuple[int, ...]
    no: tuple[int, ...]


def judge_tokens(adapter) -> JudgeTokens:
    """The ids of the first token of an assistant reply spelled each way ("Yes"/"yes", "No"/"no"), through
    this checkpoint's template and processor, as the objective benchmark finds them
    (curation/vlm/answer_tokens.py), each spelling required whole. Raises SampleError("judge_token") where a
    spelling is more than one token, or "yes" and "no" share one."""
    cached = getattr(adapter, "_judge_tokens", None)
    if cached is not None:
        return cached
    try:
        groups = answer_token_groups(adapter, whole=True)
    except AnswerTokensError as exc:
        raise SampleError("judge_token", f"{exc}: no judge verdict from this model") from None
    tokens = JudgeTokens(tuple(groups["yes"]), tuple(groups["no"]))
    adapter._judge_tokens = tokens
    return tokens


def verdict(logits_row, tokens: JudgeTokens) -> tuple[float, float]:
    """(judge_yes, judge_mass) from the next-token logits at the judge's position."""
    import torch

    probs = torch.softmax(logits_row.float(), dim=-1)
    p_yes = float(probs[list(tokens.yes)].sum())
    p_no = float(probs[list(tokens.no)].sum())
    mass = p_yes + p_no
    return (p_yes / mass if mass > 0 else 0.5), mass
