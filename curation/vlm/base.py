"""What every VLM family adapter provides: how to load it, how a sample becomes token ids with known
positions (image tokens, question, answer), and how images become pixel inputs.

A new family is one small subclass (see ``idefics2.py`` and ``llava.py``): the prompt layout and the
pixel inputs differ between families; everything else (scoring, batching, truncation) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


class SampleError(ValueError):
    """A sample that cannot be scored (no image, too long even after truncation); the batch goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Sample:
    images: list[Image.Image]
    question: str
    answer: str
    ocr: str | None = None  # "OCR Tokens: ..." goes into the prompt when given (the paper's setting)


@dataclass
class Encoded:
    input_ids: list[int]
    segments: dict[str, list[int]]  # "question" / "answer" -> token positions
    image_positions: list[int]
    images: list[Image.Image]
    truncated: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class LoadOptions:
    device: str = "cpu"  # cpu | cuda | cuda:1 ...
    dtype: str = "float32"  # float32 | bfloat16 | float16
    max_length: int | None = None  # None: the model's own context


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, not {name!r}") from None


class VLMAdapter:
    family = "base"
    #: ``model_type`` values in config.json this adapter serves
    model_types: tuple[str, ...] = ()

    def __init__(self, model, processor, model_id: str, options: LoadOptions):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.options = options
        self.image_token_id = self._image_token_id()
        self._image_block = self._build_image_block()
        limit = options.max_length or getattr(self.text_config, "max_position_embeddings", None) or 4096
        self.max_length = int(limit)

    # ---- loading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, options: LoadOptions, attn_implementation: str | dict | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(
            model_dir,
            dtype=torch_dtype(options.dtype),
            attn_implementation=attn_implementation if attn_implementation is not None else "sdpa",
        )
        model.to(options.device).eval()
        return cls(model, processor, str(model_dir), options)

    @classmethod
    def attn_implementation(cls, language_model: str) -> dict[str, str]:
        """Attention per part: the language model gets ``language_model`` (our scoring function or
        eager for the reference); vision parts keep SDPA."""
        return {"text_config": language_model, "vision_config": "sdpa"}

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    # ---- prompt --------------------------------------------------------------------------------------
    def _image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    def _build_image_block(self) -> list[int]:
        """The token ids one image expands to, as the family's own processor expands it."""
        raise NotImplementedError

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt_pieces(self, n_images: int) -> tuple[str, str, str]:
        """(before the images, between images and question, between question and answer)."""
        raise NotImplementedError

    def image_label(self, index: int, n_images: int) -> str:
        # The paper numbers images [1], [2] ... so answers depend less on their order.
        return f" [{index + 1}]" if n_images > 1 else ""

    def encode(self, sample: Sample) -> Encoded:
        if not sample.images:
            raise SampleError("no_image", "the sample has no image")
        if not (sample.answer or "").strip():
            raise SampleError("empty_text", "the text to score is empty")
        n = len(sample.images)
        head, after_images, before_answer = self.prompt_pieces(n)
        ids: list[int] = []
        bos = self.tokenizer.bos_token_id
        if bos is not None:
            ids.append(bos)
        ids += self._ids(head)
        image_positions: list[int] = []
        for i in range(n):
            ids += self._ids(self.image_label(i, n))
            start = len(ids)
            ids += self._image_block
            image_positions += [start + k for k, t in enumerate(self._image_block) if t == self.image_token_id]
        ids += self._ids(after_images)
        context = self._ids(f"OCR Tokens: {sample.ocr}\n###\n") if sample.ocr else []
        question = self._ids(sample.question or "")
        tail_before = self._ids(before_answer)
        answer = self._ids(" " + sample.answer.strip())
        end = self._end_ids()
        budget = self.max_length - (len(ids) + len(tail_before) + len(answer) + len(end))
        truncated = False
        if budget < 0:
            raise SampleError(
                "too_long", f"images and answer alone take {self.max_length - budget} tokens, over the model's {self.max_length}"
            )
        if len(context) + len(question) > budget:
            # Cut the context side (OCR first, then the start of the question), never the answer.
            truncated = True
            keep_question = min(len(question), budget)
            question = question[len(question) - keep_question :]
            context = context[: max(0, budget - keep_question)]
        ids += context
        q_start = len(ids)
        ids += question
        q_positions = list(range(q_start, len(ids)))
        ids += tail_before
        a_start = len(ids)
        ids += answer
        a_positions = list(range(a_start, len(ids)))
        ids += end
        return Encoded(ids, {"question": q_positions, "answer": a_positions}, image_positions, list(sample.images), truncated)

    def _end_ids(self) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return [eos] if eos is not None else []

    # ---- batching ------------------------------------------------------------------------------------
    def pixel_inputs(self, batch: list[Encoded]) -> dict[str, Any]:
        raise NotImplementedError

    def collate(self, batch: list[Encoded]) -> dict[str, Any]:
        """Right-padded ids and mask plus the family's pixel inputs, on the model's device."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(e.length for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            ids[i, : e.length] = torch.tensor(e.input_ids)
            mask[i, : e.length] = 1
        inputs = {"input_ids": ids, "attention_mask": mask, **self.pixel_inputs(batch)}
        device = self.options.device
        dtype = torch_dtype(self.options.dtype)
        return {k: (v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}

    def token_texts(self, ids: list[int]) -> list[str]:
        """Each token as text (with its leading space), for display and word grouping."""
        return [self.tokenizer.decode([i]) for i in ids]
