"""What every VLM family shares: loading a checkpoint, turning a sample into the model's inputs through the
checkpoint's own chat template and processor, knowing which tokens are image / question / answer, and
batching.

A sample is chat messages (``prompt_layout``: the user turn with the numbered images, the OCR section and
the question; the assistant turn with the answer), rendered by ``processor.apply_chat_template`` and then
given to the processor itself, which expands every image into as many tokens as that image needs and
returns the pixel inputs the model wants (``pixel_values`` and, per family, ``image_grid_thw``,
``image_sizes``, ``pixel_attention_mask``, ``token_type_ids`` ...). So scoring, training and evaluation see
exactly the layout the checkpoint was trained on. A family adapter (``families/``) says only where the
model's parts live (for LoRA per part), which modules are its attention projections, how its image
resolution and splitting are set, and its limits.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from . import chat, positions

log = logging.getLogger(__name__)

# processor outputs that are one value per token: padded with the ids, never concatenated
TOKEN_LEVEL_INPUTS = ("token_type_ids", "mm_token_type_ids")
# processor outputs that are about the text, not model inputs
NOT_MODEL_INPUTS = ("input_ids", "attention_mask", "offset_mapping", "text_replacement_offsets")


# where transformers' composite VLMs keep their parts (LLaVA, LLaVA-OneVision, Gemma 3, InternVL, Mistral 3)
TOWER_PROJECTOR_LANGUAGE = {"vision": ("model.vision_tower.",), "connector": ("model.multi_modal_projector.",), "language": ("model.language_model.",)}
# the attention projections of a decoder block (Llama, Mistral, Qwen, Gemma) and of a CLIP / SigLIP block
DECODER_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
VIT_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")


class SampleError(ValueError):
    """A sample that cannot be scored or trained on (no image, too long, too many images, a template that
    drops the image); the batch goes on without it."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Sample:
    images: list[Image.Image]
    question: str
    answer: str
    ocr: str | None = None  # the "OCR Tokens: ..." section's text (``prompt_layout.ocr_body``), the paper's setting


@dataclass
class Encoded:
    input_ids: list[int]
    segments: dict[str, list[int]]  # "question" / "answer" -> token positions
    image_positions: list[int]  # positions of the tokens that carry image features
    images: list[Image.Image]
    truncated: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # the processor's other model inputs for this sample
    response: list[int] = field(default_factory=list)  # answer and end-of-turn positions: what training learns
    text: str = ""  # the rendered prompt, before the images are expanded

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class LoadOptions:
    device: str = "cpu"  # cpu | cuda | cuda:1 ...
    dtype: str = "float32"  # float32 | bfloat16 | float16
    max_length: int | None = None  # None: the model's own context
    max_images: int | None = None  # None: the family's limit


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, not {name!r}") from None


class VLMAdapter:
    #: the family's name in the registry (``vitpro models families``), as ``--family`` spells it
    family: ClassVar[str] = "base"
    title: ClassVar[str] = ""
    #: ``model_type`` values in config.json this adapter serves
    model_types: ClassVar[tuple[str, ...]] = ()
    #: a real checkpoint of the family on the Hugging Face hub (for the docs and ``models families``)
    hub_example: ClassVar[str] = ""
    #: how the family's hub ids are spelled (lower case), to tell a hub id's family without its files
    hub_names: ClassVar[tuple[str, ...]] = ()
    #: where each part of the model lives: module-name prefixes; the longest matching prefix decides, so a
    #: connector that sits inside the vision tower (Qwen's merger) is still the connector
    parts: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: the modules LoRA wraps in each part: the attention projections of every block (a connector without
    #: attention: its linear layers)
    lora_modules: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: modules trained in full (peft's ``modules_to_save``) when their part is switched on, for a part with
    #: no linear layer for LoRA (Gemma 3's connector is one bare projection matrix; peft's LoRA on a bare
    #: parameter cannot take the paper's dropout)
    full_modules: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: images one sample may hold (None: as many as the context takes)
    max_images: ClassVar[int | None] = None
    #: LLaMA-Factory's template for this family (its ``template:`` setting), None where it has none
    llamafactory_template: ClassVar[str | None] = None
    #: whether evaluation may generate for several prompts at once (left-padded) with the same greedy
    #: answers as one at a time; a family that cannot says why in ``batched_generation_note`` and is run
    #: one item at a time
    batched_generation: ClassVar[bool] = True
    batched_generation_note: ClassVar[str] = ""

    def __init__(self, model, processor, model_id: str, options: LoadOptions):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.options = options
        self.image_token_id = self._image_token_id()
        self.image_token = getattr(processor, "image_token", None)
        if getattr(processor, "chat_template", None):
            self._template, self.template_source = None, "checkpoint"
        else:
            fallback = chat.family_template(self.family)
            if fallback is None:
                raise ValueError(f"{model_id} has no chat template and the {self.family} family has no documented layout here: "
                                 "copy the checkpoint's chat_template.jinja (or chat_template.json) into the folder")
            self._template, self.template_source = fallback, f"fallback:{self.family}"
            log.warning("%s has no chat template: using the %s layout written from its documentation "
                        "(put the checkpoint's chat_template.jinja in the folder to use its own)", model_id, self.family)
        limit = options.max_length or getattr(self.text_config, "max_position_embeddings", None) or 4096
        self.max_length = int(limit)
        self.image_limit = options.max_images if options.max_images is not None else self.max_images
        # the processor's outputs the model's forward takes (it also returns bookkeeping such as num_crops)
        self._model_inputs = set(inspect.signature(self._base_forward()).parameters)
        self.end_of_turn_id = self._find_end_of_turn()

    # ---- loading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, options: LoadOptions, attn_implementation: str | dict | None = None, **model_kwargs):
        """``attn_implementation``: one name for every part, or per sub-config (``attention_per_part``).
        ``model_kwargs`` go to ``from_pretrained`` (training passes a 4-bit quantization config)."""
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

    @staticmethod
    def attention_per_part(model_dir: str | Path, language_model: str, others: str = "sdpa") -> dict[str, str]:
        """Attention per sub-config: the language model gets ``language_model`` (our scoring function, or
        FlashAttention-2 for training); the vision tower, connector and any other part get ``others``."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(model_dir))
        per_part = {name: others for name in getattr(config, "sub_configs", {})}
        per_part["text_config"] = language_model
        return per_part

    def _base_forward(self):
        model = self.model
        # a peft wrapper forwards to the wrapped model's forward
        while hasattr(model, "get_base_model") and model is not model.get_base_model():
            model = model.get_base_model()
        return model.forward

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    def _image_token_id(self) -> int:
        config = self.model.config
        for name in ("image_token_id", "image_token_index"):
            value = getattr(config, name, None)
            if value is not None:
                return int(value)
        raise ValueError(f"{self.family}: the model config names no image token")

    # ---- parts (LoRA per part) -----------------------------------------------------------------------
    @classmethod
    def part_of(cls, module_name: str) -> str | None:
        """The part a module belongs to (longest prefix wins), or None (e.g. the output head)."""
        name = module_name.removeprefix("base_model.model.") + "."  # a part's own top module belongs to it too
        best, best_len = None, -1
        for part, prefixes in cls.parts.items():
            for prefix in prefixes:
                if name.startswith(prefix) and len(prefix) > best_len:
                    best, best_len = part, len(prefix)
        return best

    # ---- image options (resolution, splitting) -------------------------------------------------------
    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Change the image resolution or splitting the processor uses; families that cannot say so."""
        if longest_edge is not None or splitting:
            raise ValueError(f"{self.family} models take images at their vision tower's fixed size; this family has no resolution or splitting option")

    # ---- the chat template ---------------------------------------------------------------------------
    def _apply(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, chat_template=self._template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _find_end_of_turn(self) -> int | None:
        """The special token that closes an assistant turn in this template (``<|im_end|>``,
        ``<end_of_turn>``, ``<end_of_utterance>``, ``</s>`` ...): generation stops there, training learns it."""
        rendered = chat.render(self._apply, 0, "q", "a", "")
        ids, offsets = self._tokenize(rendered.text)
        answer_end = rendered.spans["answer"][1]
        special = set(self.tokenizer.all_special_ids)
        for k, (a, b) in enumerate(offsets):
            if a >= answer_end and ids[k] in special:
                return int(ids[k])
        return self.tokenizer.eos_token_id

    def stop_token_ids(self) -> list[int]:
        return sorted({i for i in (self.end_of_turn_id, self.tokenizer.eos_token_id) if i is not None})

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=self._adds_bos(text), return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _adds_bos(self, text: str) -> bool:
        # as transformers' own apply_chat_template does: a template that writes the BOS itself gets none added
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    # ---- data stays data -----------------------------------------------------------------------------
    def _special_strings(self) -> list[str]:
        strings = set(self.tokenizer.all_special_tokens) | {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        return sorted((t for t in strings if t), key=len, reverse=True)

    def safe_text(self, text: str) -> tuple[str, int]:
        """Data stays data: a special token's string in user text (``<image>`` in a title) would become
        the token itself and break the image count; a zero-width space after its first character makes
        it plain text. The template's stand-in characters are dropped the same way."""
        count = 0
        for special in self._special_strings():
            if special in text:
                count += text.count(special)
                text = text.replace(special, special[0] + "\u200b" + special[1:])
        for stand_in in chat.STAND_INS.values():
            if stand_in in text:
                count += text.count(stand_in)
                text = text.replace(stand_in, "\ufffd")
        return text, count

    # ---- encoding ------------------------------------------------------------------------------------
    def _check_images(self, sample: Sample) -> None:
        if not sample.images:
            raise SampleError("no_image", "the sample has no image")
        if self.image_limit is not None and len(sample.images) > self.image_limit:
            raise SampleError("too_many_images", f"{self.family} takes at most {self.image_limit} image(s) per sample; this one has {len(sample.images)}")

    def _process(self, rendered: chat.Rendered, images: list[Image.Image], *, with_offsets: bool):
        if self.image_token is not None and rendered.text.count(self.image_token) != len(images):
            raise SampleError("image_placeholder", f"the chat template rendered {rendered.text.count(self.image_token)} image placeholder(s) "
                                                   f"{self.image_token!r} for {len(images)} image(s)")
        kwargs = {"return_offsets_mapping": True, "return_text_replacement_offsets": True} if with_offsets else {}
        try:
            return self.processor(text=[rendered.text], images=[[im.convert("RGB") for im in images]], return_tensors="pt",
                                  add_special_tokens=self._adds_bos(rendered.text), **kwargs)
        except ValueError as exc:  # the processor's own checks (placeholders against images, token counts)
            raise SampleError("processor", f"the {self.family} processor refused the sample: {exc}") from None

    def _inputs_of(self, enc) -> dict[str, Any]:
        return {k: v for k, v in enc.items() if k not in NOT_MODEL_INPUTS and k in self._model_inputs}

    def _positions(self, enc, rendered: chat.Rendered, ids: list[int]) -> dict[str, list[int]]:
        offsets = [tuple(int(x) for x in o) for o in enc["offset_mapping"][0]]
        replacements = (enc.get("text_replacement_offsets") or [None])[0]
        try:
            if replacements:
                return positions.positions_from_replacements(offsets, rendered.spans, replacements)
            tail_start = rendered.text.rindex(self.image_token) + len(self.image_token) if self.image_token else 0
            return positions.positions_from_tail(ids, rendered.spans, tail_start, self._tokenize, rendered.text)
        except positions.PositionError as exc:
            raise SampleError("positions", f"cannot place the question and answer among the {self.family} processor's tokens: {exc}") from None

    def encode(self, sample: Sample, follow_up: str | None = None) -> Encoded:
        """The sample through the chat template and the processor: ids, the question and answer
        positions (from character offsets of the rendered text), the image token positions (as many per
        image as the processor gave that image), the response positions for training, the pixel inputs.
        Too long for the context: the OCR text is cut first, then the start of the question, never the answer."""
        self._check_images(sample)
        if not (sample.answer or "").strip():
            raise SampleError("empty_text", "the text to score is empty")
        n = len(sample.images)
        question, q_escaped = self.safe_text((sample.question or "").strip())
        answer, a_escaped = self.safe_text(sample.answer.strip())
        ocr, o_escaped = self.safe_text(sample.ocr.strip()) if sample.ocr else ("", 0)
        truncated = False
        for _ in range(12):
            rendered = self._render(n, question, answer, ocr, follow_up)
            enc = self._process(rendered, sample.images, with_offsets=True)
            ids = [int(t) for t in enc["input_ids"][0]]
            excess = len(ids) - self.max_length
            if excess <= 0:
                break
            truncated = True
            spans = self._positions(enc, rendered, ids)
            if ocr:
                ocr = _cut(ocr, len(spans["ocr"]), excess, keep="start")
            elif question:
                question = _cut(question, len(spans["question"]), excess, keep="end")
            else:
                image_tokens = sum(1 for t in ids if t == self.image_token_id)
                raise SampleError("too_long", f"the {n} image(s) ({image_tokens} image tokens) and the answer alone take {len(ids)} tokens, "
                                              f"over the model's {self.max_length}")
        else:  # pragma: no cover - each round removes text
            raise SampleError("too_long", "the prompt could not be cut to the model's length")
        segments = self._positions(enc, rendered, ids)
        image_positions = [k for k, t in enumerate(ids) if t == self.image_token_id]
        if not image_positions:
            raise SampleError("image_tokens", f"the {self.family} processor gave the image(s) no image tokens")
        if not segments["answer"]:
            raise SampleError("empty_text", "the answer has no tokens")
        escaped = q_escaped + a_escaped + o_escaped
        notes = {"special_tokens_escaped": escaped} if escaped else {}
        if follow_up is not None:  # the last position: where the reply to the follow-up turn is predicted (curation/judge.py)
            notes["follow_up_at"] = len(ids) - 1
        return Encoded(ids, {"question": segments["question"], "answer": segments["answer"]}, image_positions, list(sample.images),
                       truncated, notes, self._inputs_of(enc), self._response(ids, segments["answer"]), rendered.text)

    def _render(self, n: int, question: str, answer: str | None, ocr: str, follow_up: str | None = None) -> chat.Rendered:
        try:
            return chat.render(self._apply, n, question, answer, ocr, follow_up)
        except chat.TemplateError as exc:
            raise SampleError(exc.code, exc.message) from None

    def _response(self, ids: list[int], answer: list[int]) -> list[int]:
        """The answer's tokens and the template's tokens after it up to the end-of-turn token: the
        response the paper trains on (so the model learns to stop), nothing of the prompt."""
        end = len(ids) - 1
        for k in range(max(answer) + 1, len(ids)):
            if ids[k] == self.end_of_turn_id:
                end = k
                break
        return sorted(set(answer) | set(range(max(answer) + 1, end + 1)))

    def encode_prompt(self, sample: Sample) -> Encoded:
        """The prompt up to where the model's answer starts (evaluation generates from here), rendered by
        the same template with ``add_generation_prompt``."""
        self._check_images(sample)
        question, _ = self.safe_text((sample.question or "").strip())
        ocr, _ = self.safe_text(sample.ocr.strip()) if sample.ocr else ("", 0)
        rendered = self._render(len(sample.images), question, None, ocr)
        enc = self._process(rendered, sample.images, with_offsets=False)
        ids = [int(t) for t in enc["input_ids"][0]]
        if len(ids) > self.max_length:
            raise SampleError("too_long", f"the prompt takes {len(ids)} tokens, over the model's {self.max_length}")
        image_positions = [k for k, t in enumerate(ids) if t == self.image_token_id]
        return Encoded(ids, {"question": [], "answer": []}, image_positions, list(sample.images), inputs=self._inputs_of(enc), text=rendered.text)

    # ---- batching ------------------------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        """The id padding is written with (the tokenizer's pad token; its end-of-turn or EOS token where it
        has none, as generation pads finished rows with it)."""
        if self.tokenizer.pad_token_id is not None:
            return int(self.tokenizer.pad_token_id)
        stops = self.stop_token_ids()
        return stops[0] if stops else 0

    def collate(self, batch: list[Encoded], padding_side: str = "right") -> dict[str, Any]:
        """Padded ids and mask plus the processor's other inputs of every sample, on the model's device:
        per-token inputs are padded like the ids; the rest (pixel values, grids, sizes) are joined along
        their first axis, zero-padded where samples differ in size (more images, more tiles), as the
        processors pad a batch themselves. ``padding_side``: "right" for training and scoring (positions
        stay those of the sample alone), "left" for generation (every row's last token is its prompt's
        last, where the new tokens follow)."""
        import torch

        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
        pad = self.pad_token_id
        width = max(e.length for e in batch)

        def span(e: Encoded) -> slice:
            return slice(width - e.length, width) if padding_side == "left" else slice(0, e.length)

        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            ids[i, span(e)] = torch.tensor(e.input_ids)
            mask[i, span(e)] = 1
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        for key in sorted({k for e in batch for k in e.inputs}):
            values = [torch.as_tensor(e.inputs[key]) for e in batch if key in e.inputs]
            if key in TOKEN_LEVEL_INPUTS:  # (1, length) per sample: one row each, padded like the ids
                joined = torch.zeros((len(batch), width), dtype=values[0].dtype)
                for i, e in enumerate(batch):
                    if key in e.inputs:
                        joined[i, span(e)] = torch.as_tensor(e.inputs[key]).reshape(-1)
                inputs[key] = joined
            else:
                inputs[key] = _join(values)
        device = self.options.device
        dtype = torch_dtype(self.options.dtype)
        return {k: (v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}

    def token_texts(self, ids: list[int]) -> list[str]:
        """Each token as text (with its leading space), for display and word grouping."""
        return [self.tokenizer.decode([i]) for i in ids]


def _join(values):
    """Tensors joined along the first axis, each zero-padded to the largest size on the other axes."""
    import torch

    if len(values) == 1:
        return values[0]
    shape = [max(v.shape[d] for v in values) for d in range(1, values[0].dim())]
    padded = []
    for v in values:
        if list(v.shape[1:]) != shape:
            out = torch.zeros((v.shape[0], *shape), dtype=v.dtype)
            out[(slice(None), *(slice(0, s) for s in v.shape[1:]))] = v
            v = out
        padded.append(v)
    return torch.cat(padded, dim=0)


def _cut(text: str, n_tokens: int, excess: int, *, keep: str) -> str:
    """Drop about ``excess`` of the ``n_tokens`` tokens ``text`` takes: the share of characters, at a word
    boundary where there is one (the caller tokenizes again and cuts more if it was not enough)."""
    if n_tokens <= excess:
        return ""
    keep_chars = len(text) * (n_tokens - excess) // n_tokens
    if keep == "start":  # keep the start, drop the end
        kept = text[:keep_chars]
        return (kept.rsplit(" ", 1)[0] if " " in kept else kept).rstrip()
    kept = text[len(text) - keep_chars:]  # keep the end, drop the start
    return (kept.split(" ", 1)[1] if " " in kept else kept).lstrip()
