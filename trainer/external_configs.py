"""Settings for the trainers users run on our exports: a LLaMA-Factory ``train_lora.yaml`` and an ms-swift
``swift sft`` command line, both with the paper's LoRA settings (``TrainConfig``) and the base model's family.

LLaMA-Factory needs the template that matches the base model (``qwen2_vl`` for Qwen2-VL and Qwen2.5-VL,
``gemma3``, ``intern_vl`` ...: the family adapter's ``llamafactory_template``); it has none for some
families (IDEFICS2, IDEFICS3/SmolVLM, LLaVA-OneVision), and then no YAML is written: the manifest says why.
LLaMA-Factory puts LoRA on named linear layers and keeps the vision tower and projector frozen unless told;
the YAML names the family's attention projections, unfreezes the vision tower and trains the projector
fully, the nearest it comes to the paper's LoRA on all three parts. ms-swift infers the template from the
model; its ``--freeze_vit/--freeze_aligner/--freeze_llm false`` put LoRA on every part.

Model ids written here are a hub id or a folder's name, never a path of the machine that exported.
Pure functions; no model library.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from curation.model_ids import public_model_id

from .config import TrainConfig

DEFAULT_BASE_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
# ms-swift calls the vision tower "vit", the connector "aligner", the language model "llm"
SWIFT_FREEZE_FLAGS = {"vision": "--freeze_vit", "connector": "--freeze_aligner", "language": "--freeze_llm"}
# LLaMA-Factory's switches for the parts LoRA does not reach by default
LLAMAFACTORY_FREEZE = {"vision": "freeze_vision_tower", "connector": "freeze_multi_modal_projector", "language": "freeze_language_model"}


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z0-9_./,:-]+", text) and text.lower() not in ("true", "false", "null", "yes", "no") else '"' + text.replace('"', '\\"') + '"'


def llamafactory_yaml(family, base_model: str, dataset_name: str, config: TrainConfig = TrainConfig(), *, output_dir: str = "saves/vitpro-lora") -> str | None:
    """``train_lora.yaml`` for ``llamafactory-cli train``, run from the export folder; None when LLaMA-Factory
    has no template for the family."""
    if not family.llamafactory_template:
        return None
    parts = set(config.lora.parts)
    # LLaMA-Factory names LoRA targets by leaf name, over the parts it leaves unfrozen: the attention
    # projections of the language model and the vision tower (the projector is trained in full below)
    names = [n for part in ("language", "vision") if part in parts for n in family.lora_modules.get(part, ())]
    settings: list[tuple[str, Any, str]] = [
        ("model_name_or_path", public_model_id(base_model), "a hub id, or the path of your local copy"),
        ("trust_remote_code", True, ""),
        ("stage", "sft", ""),
        ("do_train", True, ""),
        ("finetuning_type", "lora", ""),
        ("lora_rank", config.lora.r, "the paper's LoRA: r=256, alpha=32, dropout 0.1"),
        ("lora_alpha", config.lora.alpha, ""),
        ("lora_dropout", config.lora.dropout, ""),
        ("lora_target", ",".join(dict.fromkeys(names)) or "all", "the attention projections, as the paper tunes them"),
        (LLAMAFACTORY_FREEZE["vision"], "vision" not in parts, "false: LoRA on the vision tower too"),
        (LLAMAFACTORY_FREEZE["connector"], "connector" not in parts, "false: the projector is trained (in full: LLaMA-Factory puts no LoRA there)"),
        (LLAMAFACTORY_FREEZE["language"], "language" not in parts, ""),
        ("dataset", dataset_name, "the entry of dataset_info.json in this folder"),
        ("dataset_dir", ".", ""),
        ("template", family.llamafactory_template, f"LLaMA-Factory's template for {family.title}"),
        ("cutoff_len", config.max_length or 4096, ""),
        ("preprocessing_num_workers", 8, ""),
        ("output_dir", output_dir, ""),
        ("logging_steps", 10, ""),
        ("save_steps", config.checkpoint_every, ""),
        ("per_device_train_batch_size", config.batch_size, ""),
        ("gradient_accumulation_steps", config.grad_accum, ""),
        ("learning_rate", config.learning_rate, ""),
        ("num_train_epochs", config.epochs, ""),
        ("lr_scheduler_type", "cosine", ""),
        ("warmup_ratio", config.warmup_ratio, ""),
        ("max_grad_norm", config.max_grad_norm, ""),
        ("bf16", True, ""),
        ("seed", config.seed, ""),
    ]
    if "connector" in parts:
        # the connector module's own name (multi_modal_projector, merger, connector): LLaMA-Factory trains it in full
        settings.append(("additional_target", family.parts["connector"][0].rstrip(".").rsplit(".", 1)[-1], "the projector, trained in full"))
    lines = ["# LLaMA-Factory LoRA run on this export (VIT-Pro Curation Studio): llamafactory-cli train train_lora.yaml",
             f"# base family: {family.family} ({family.title})"]
    for key, value, comment in settings:
        lines.append(f"{key}: {_yaml_scalar(value)}" + (f"  # {comment}" if comment else ""))
    return "\n".join(lines) + "\n"


def swift_command(base_model: str, data_file: str, config: TrainConfig = TrainConfig(), *, output_dir: str = "output/vitpro-lora") -> list[str]:
    """``swift sft`` arguments for a LoRA run on the ms-swift export (``data.jsonl``)."""
    parts = set(config.lora.parts)
    model = public_model_id(base_model)
    args = ["swift", "sft", "--model", model]
    if "/" in model:
        args += ["--use_hf", "true"]  # a Hugging Face id (ms-swift looks on ModelScope otherwise)
    args += [
        "--train_type", "lora", "--dataset", data_file,
        "--lora_rank", str(config.lora.r), "--lora_alpha", str(config.lora.alpha), "--lora_dropout", str(config.lora.dropout),
        "--target_modules", "all-linear",
    ]
    for part, flag in SWIFT_FREEZE_FLAGS.items():
        args += [flag, "false" if part in parts else "true"]
    args += [
        "--num_train_epochs", str(config.epochs), "--learning_rate", str(config.learning_rate),
        "--per_device_train_batch_size", str(config.batch_size), "--gradient_accumulation_steps", str(config.grad_accum),
        "--warmup_ratio", str(config.warmup_ratio), "--torch_dtype", "bfloat16", "--output_dir", output_dir,
    ]
    if config.max_length:
        args += ["--max_length", str(config.max_length)]
    return args


def swift_command_line(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
