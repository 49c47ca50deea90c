"""The generation prompt: a plain template file plus few-shot examples per task, versioned by content.

The template (``resources/prompts/generation.txt``) holds the role, the rules, the format of the output
and the two tagged context blocks; the examples (``resources/prompts/examples.json``) are chosen per
task. Both can be replaced by files of the user's (``--template``, ``--examples``). Their content hash
is the prompt version stored with every sample.

Text from the data stays data: anything in it that looks like one of our tags (``</context_1>``,
``<question>``) is escaped, so a customer who writes "ignore previous instructions" cannot close the
context block, add a question of their own or change the output format.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..verdicts import UNANSWERABLE
from .facts import canonical_key
from .tasks import ATTRIBUTE_KEYS, TASKS, ItemContext, context_blocks

_TAGS = re.compile(r"<\s*(/?)\s*(context_1|context_2|question|answer|example)\s*>", re.IGNORECASE)
SYSTEM = "You write question and answer pairs about product photos for training a vision-language model."


def escape_data(text: str) -> str:
    return _TAGS.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}&gt;", text)


@dataclass(frozen=True)
class PromptTemplate:
    template: str
    examples: dict[str, list[dict[str, str]]]
    version: str

    @classmethod
    def load(cls, template_path: str | Path | None = None, examples_path: str | Path | None = None) -> "PromptTemplate":
        folder = resources.files("curation").joinpath("resources/prompts")
        template = Path(template_path).read_text(encoding="utf-8") if template_path else folder.joinpath("generation.txt").read_text(encoding="utf-8")
        examples_text = Path(examples_path).read_text(encoding="utf-8") if examples_path else folder.joinpath("examples.json").read_text(encoding="utf-8")
        try:
            examples = json.loads(examples_text)
        except ValueError as exc:
            raise ValueError(f"the examples file is not valid JSON: {exc}") from exc
        unknown = set(examples) - set(TASKS)
        if unknown:
            raise ValueError(f"examples for unknown task(s): {', '.join(sorted(unknown))}")
        missing = {"$context_1", "$context_2", "$examples"} - {f"${m}" for m in re.findall(r"\$(\w+)", template)}
        if missing:
            raise ValueError(f"the template lacks {', '.join(sorted(missing))}")
        version = hashlib.sha256((template + "\x00" + json.dumps(examples, sort_keys=True)).encode()).hexdigest()[:12]
        return cls(template, examples, version)

    def render(self, item: ItemContext, task: str, n_pairs: int = 3) -> list[dict[str, str]]:
        """Chat messages (system + user) for one item and one task."""
        context_1, context_2 = context_blocks(item)
        if task == "comparison":
            context_2 += "\nPhoto [1]: the customer's photo. Photo [2]: the catalog photo."
        if task == "matching" and item.negative_title:
            context_2 += f"\nAlso ask whether the photo shows this other product (it does not): {item.negative_title}"
        examples = "\n".join(
            "<example>\n"
            f"<context_1>\n{escape_data(e['context_1'])}\n</context_1>\n<context_2>\n{escape_data(e['context_2'])}\n</context_2>\n"
            f"<question>{escape_data(e['question'])}</question>\n<answer>{escape_data(e['answer'])}</answer>\n</example>"
            for e in self.examples.get(task, [])
        ) or "(none)"
        format_rule = _attribute_rule(item) if task == "attribute_extraction" else ""
        user = string.Template(self.template).safe_substitute(
            task_name=task.replace("_", " "),
            task_description=TASKS[task],
            n_pairs=n_pairs,
            format_rule=format_rule,
            examples=examples,
            context_1=escape_data(context_1),
            context_2=escape_data(context_2),
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _attribute_rule(item: ItemContext) -> str:
    """The keys an attribute answer may use: the item's own (spelled as the store spells them) and the paper's."""
    own = [k for k in dict.fromkeys(canonical_key(k) for k in item.product_attributes()) if k not in ATTRIBUTE_KEYS]
    rule = "\n- Every answer is one JSON object."
    if own:
        rule += f" Give this item's own attributes under these keys: {', '.join(own)}."
    return rule + (
        f" Add the keys {', '.join(ATTRIBUTE_KEYS)} wherever the context states a value (the title's words count: a colour,"
        f' a size, "Pack of 12"); write "{UNANSWERABLE}" only where nothing states it. Use no other keys.'
    )
