"""Loading a VLM for training (4-bit, FlashAttention-2 by option) and putting LoRA on the parts asked for.

Which modules are the attention layers of which part is the adapter's knowledge (``parts`` and
``lora_modules`` of its family adapter in ``curation/vlm/families``), so a new family needs no change here.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from curation.vlm import LoadOptions, VLMAdapter, adapter_for

from .config import LoraSettings, TrainConfig


class AcceleratorError(ValueError):
    """An option this machine cannot honour (4-bit or FlashAttention-2 without a CUDA GPU)."""


def check_accelerator_options(config: TrainConfig) -> None:
    """A clear message up front instead of a stack trace from deep inside a loader."""
    wants = [name for name, on in (("4-bit loading (bitsandbytes)", config.load_4bit), ("FlashAttention-2", config.flash_attention)) if on]
    if not wants:
        return
    import torch

    if not config.device.startswith("cuda") or not torch.cuda.is_available():
        raise AcceleratorError(f"{' and '.join(wants)} need(s) a CUDA GPU; this worker runs on {config.device!r}"
                               + ("" if torch.cuda.is_available() else " and has no GPU") + ". Drop the option or run on the gpu/train queue of a GPU worker.")
    if config.load_4bit and importlib.util.find_spec("bitsandbytes") is None:
        raise AcceleratorError("4-bit loading needs the bitsandbytes package: pip install bitsandbytes")
    if config.flash_attention:
        if importlib.util.find_spec("flash_attn") is None:
            raise AcceleratorError("FlashAttention-2 needs the flash-attn package: pip install flash-attn --no-build-isolation")
        major, _ = torch.cuda.get_device_capability()
        if major < 8:
            raise AcceleratorError("FlashAttention-2 needs an Ampere or newer GPU (compute capability 8.0+)")
        if config.dtype not in ("bfloat16", "float16"):
            raise AcceleratorError("FlashAttention-2 runs in bfloat16 or float16; pass --dtype bfloat16")


def load_for_training(model_dir: str | Path, config: TrainConfig) -> VLMAdapter:
    check_accelerator_options(config)
    cls = adapter_for(model_dir)
    kwargs = {}
    if config.load_4bit:
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if config.dtype == "bfloat16" else torch.float16,
        )
        kwargs["device_map"] = {"": config.device}
    kind = "flash_attention_2" if config.flash_attention else "sdpa"
    attn = cls.attention_per_part(model_dir, kind, others=kind)
    adapter = cls.load(model_dir, LoadOptions(device=config.device, dtype=config.dtype, max_length=config.max_length), attn, **kwargs)
    if config.images.longest_edge is not None or config.images.splitting is not None:
        adapter.configure_images(longest_edge=config.images.longest_edge, splitting=config.images.splitting)
    return adapter


def target_modules(adapter: VLMAdapter | type[VLMAdapter], model, parts: tuple[str, ...]) -> list[str]:
    """Full names of the modules LoRA wraps: the attention projections of every block of each part."""
    import torch

    names = []
    for part in parts:
        leaves = adapter.lora_modules[part]
        # linear layers only: a leaf name such as "proj" or "0" may also name a container elsewhere
        names += [n for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and adapter.part_of(n) == part and n.rsplit(".", 1)[-1] in leaves]
    if not names and not full_modules(adapter, model, parts):
        raise ValueError(f"no attention modules found for LoRA in part(s) {', '.join(parts)} of this {adapter.family} model")
    return names


def full_modules(adapter: VLMAdapter | type[VLMAdapter], model, parts: tuple[str, ...]) -> list[str]:
    """Modules trained in full for the chosen parts that LoRA cannot reach (a connector with no linear layer)."""
    wanted = [m for part in parts for m in adapter.full_modules.get(part, ())]
    present = {n for n, _ in model.named_modules()}
    return [m for m in wanted if m in present]


def apply_lora(adapter: VLMAdapter, settings: LoraSettings, *, seed: int = 0, gradient_checkpointing: bool = False, quantized: bool = False):
    """Wrap ``adapter.model`` with peft LoRA on the chosen parts; every other weight is frozen. LoRA's A
    matrices start random: seeded, so two runs of one config start from the same weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = adapter.model
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        # non-reentrant checkpointing works with frozen inputs; the reentrant kind would need input grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    names = target_modules(adapter, model, settings.parts)
    in_full = full_modules(adapter, model, settings.parts)
    # an anchored pattern: a leaf name alone ("q_proj") would also catch the parts left out
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$" if names else []
    torch.manual_seed(seed)
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=pattern, bias="none",
                        modules_to_save=in_full or None)
    peft_model = get_peft_model(model, config)
    adapter.model = peft_model
    return peft_model
