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
    #: where each part of the model lives (module name prefixes), for LoRA per part (the paper's Table 6)
    part_prefixes: dict[str, str] = {}
    #: the modules LoRA wraps in each part: the attention projections of every transformer block
    lora_modules: dict[str, tuple[str, ...]] = {}

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
    def load(cls, model_dir: str | Path, options: LoadOptions, attn_implementation: str | dict | None = None, **model_kwargs):
        """``model_kwargs`` go to ``from_pretrained`` (training passes a 4-bit quantization config)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(
            model_dir,
            dtype=torch_dtype(options.dtype),
            attn_implementation=attn_implementation if attn_implementation is not None else "sdpa",
            **model_kwargs,
        )
        if "quantization_config" not in model_kwargs:  # a quantized model is placed by its loader
            model.to(options.device)
        model.eval()
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

    # ---- image options (resolution, splitting) -------------------------------------------------------
    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Change the image resolution or splitting the processor uses; families that cannot say so."""
        if longest_edge is not None or splitting:
            raise ValueError(f"{self.family} models take images at their vision tower's fixed size; resolution and splitting options apply to IDEFICS2")

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

    def end_text(self) -> str:
        return self.tokenizer.eos_token or ""

    def image_label(self, index: int, n_images: int) -> str:
        # The paper numbers images [1], [2] ... so answers depend less on their order.
        return f" [{index + 1}]" if n_images > 1 else ""

    def _special_strings(self) -> list[str]:
        strings = set(self.tokenizer.all_special_tokens) | {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        return sorted((t for t in strings if t), key=len, reverse=True)

    def safe_text(self, text: str) -> tuple[str, int]:
        """Data stays data: a special token's string in user text (``<image>`` in a title) would become
        the token itself and break the image count; a zero-width space after its first character makes
        it plain text."""
        count = 0
        for special in self._special_strings():
            if special in text:
                count += text.count(special)
                text = text.replace(special, special[0] + "\u200b" + special[1:])
        return text, count

    def encode(self, sample: Sample) -> Encoded:
        """The whole prompt is tokenized at once, as the model's own template would be (tokenizing piece
        by piece changes tokens at the joins for SentencePiece-style tokenizers); character offsets then
        say which tokens are the question and which the answer."""
        if not sample.images:
            raise SampleError("no_image", "the sample has no image")
        if not (sample.answer or "").strip():
            raise SampleError("empty_text", "the text to score is empty")
        n = len(sample.images)
        question, q_escaped = self.safe_text(sample.question or "")
        answer, a_escaped = self.safe_text(sample.answer.strip())
        ocr, o_escaped = self.safe_text(sample.ocr) if sample.ocr else ("", 0)
        truncated = False
        for _ in range(6):
            text, spans = self._prompt_text(n, question, answer, ocr)
            enc = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
            excess = len(ids) - self.max_length
            if excess <= 0:
                break
            truncated = True
            # Cut the context side (the OCR text first, then the start of the question), never the answer.
            if ocr:
                ocr = self._cut(ocr, offsets, spans["ocr"], excess, keep="start")
            elif question:
                question = self._cut(question, offsets, spans["question"], excess, keep="end")
            else:
                raise SampleError("too_long", f"images and answer alone take {len(ids)} tokens, over the model's {self.max_length}")
        else:  # pragma: no cover - each round removes at least one token
            raise SampleError("too_long", "the prompt could not be cut to the model's length")
        image_positions = [k for k, t in enumerate(ids) if t == self.image_token_id]
        expected = n * sum(1 for t in self._image_block if t == self.image_token_id)
        if len(image_positions) != expected:
            raise SampleError("image_tokens", f"the prompt has {len(image_positions)} image tokens, the {n} image(s) need {expected}")
        segments = {name: self._positions(offsets, spans[name]) for name in ("question", "answer")}
        if not segments["answer"]:
            raise SampleError("empty_text", "the answer has no tokens")
        notes = {"special_tokens_escaped": q_escaped + a_escaped + o_escaped} if (q_escaped + a_escaped + o_escaped) else {}
        return Encoded(ids, segments, image_positions, list(sample.images), truncated, notes)

    def encode_prompt(self, sample: Sample) -> Encoded:
        """The prompt up to where the model's answer starts (evaluation generates from here). Built by the
        same template as :meth:`encode`, so training and evaluation see the same layout."""
        if not sample.images:
            raise SampleError("no_image", "the sample has no image")
        question, _ = self.safe_text(sample.question or "")
        ocr, _ = self.safe_text(sample.ocr) if sample.ocr else ("", 0)
        text, spans = self._prompt_text(len(sample.images), question, "", ocr)
        text = text[: spans["answer"][0]].rstrip(" ")
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        if len(ids) > self.max_length:
            raise SampleError("too_long", f"the prompt takes {len(ids)} tokens, over the model's {self.max_length}")
        image_positions = [k for k, t in enumerate(ids) if t == self.image_token_id]
        return Encoded(ids, {"question": [], "answer": []}, image_positions, list(sample.images))

    def _prompt_text(self, n: int, question: str, answer: str, ocr: str) -> tuple[str, dict[str, tuple[int, int]]]:
        head, after_images, before_answer = self.prompt_pieces(n)
        block = self.tokenizer.decode(self._image_block)  # the processor's own expansion of one image
        parts = head + "".join(self.image_label(i, n) + block for i in range(n)) + after_images
        spans: dict[str, tuple[int, int]] = {}
        if ocr:
            parts += "OCR Tokens: "
            spans["ocr"] = (len(parts), len(parts) + len(ocr))
            parts += ocr + "\n###\n"
        spans["question"] = (len(parts), len(parts) + len(question))
        parts += question + before_answer + " "
        spans["answer"] = (len(parts), len(parts) + len(answer))
        parts += answer + self.end_text()
        return parts, spans

    @staticmethod
    def _positions(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
        start, end = span
        return [k for k, (a, b) in enumerate(offsets) if b > a and a < end and b > start]

    def _cut(self, text: str, offsets, span, excess: int, keep: str) -> str:
        """Drop about ``excess`` tokens' worth of ``text`` (whose tokens sit at ``span`` in the prompt)."""
        tokens = self._positions(offsets, span)
        if len(tokens) <= excess:
            return ""
        if keep == "start":  # keep the start, drop the end
            cut_at = offsets[tokens[len(tokens) - excess]][0] - span[0]
            return text[: max(0, cut_at)].rstrip()
        cut_at = offsets[tokens[excess]][0] - span[0]  # keep the end, drop the start
        return text[max(0, cut_at) :].lstrip()

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
