"""Tiny IDEFICS2 (Mistral text model, SigLIP vision, perceiver connector)."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("idefics2")
def make_idefics2(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, image_seq_len: int = 8) -> Path:
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor, Idefics2Processor

    tokenizer = train_tokenizer(
        extra_special={"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>", "end_of_utterance_token": "<end_of_utterance>"}
    )
    text = dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="mistral", sliding_window=None)
    config = Idefics2Config(
        text_config=text,
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64, "patch_size": 8},
        perceiver_config={"hidden_size": hidden, "resampler_n_latents": image_seq_len, "resampler_depth": 1, "resampler_n_heads": 2, "resampler_head_dim": 16,
                          "num_key_value_heads": 1, "rms_norm_eps": 1e-5},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    set_seed(seed)
    model = Idefics2ForConditionalGeneration(config).eval()
    processor = Idefics2Processor(
        image_processor=Idefics2ImageProcessor(do_image_splitting=False, size={"longest_edge": 64, "shortest_edge": 32}),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=family_template("idefics2"),
    )
    return save(out, model, processor, "idefics2", seed)


_ROW_COL = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]


@builder("idefics3")
def make_idefics3(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, tile: int = 32,
                  smolvlm: bool = False) -> Path:
    """IDEFICS3 as SmolVLM ships it: each image split into tiles of the vision tower's size (a grid of
    ``<row_i_col_j>`` crops plus the whole image, ``<global-img>``), each tile pixel-shuffled into few tokens.
    ``smolvlm``: the same model under SmolVLM2's own classes (model type ``smolvlm``, with a video processor)."""
    if smolvlm:
        from transformers import SmolVLMConfig as Idefics3Config
        from transformers import SmolVLMForConditionalGeneration as Idefics3ForConditionalGeneration
        from transformers import SmolVLMImageProcessor as Idefics3ImageProcessor
        from transformers import SmolVLMProcessor, SmolVLMVideoProcessor
    else:
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tokenizer = train_tokenizer(
        extra_special={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>", "video_token": "<video>",
                       "end_of_utterance_token": "<end_of_utterance>"},
        more_special=tuple(_ROW_COL), bos="<|im_start|>", eos="<end_of_utterance>", add_bos=False,  # the template writes <|im_start|>
    )
    patch, scale = 8, 2
    config = Idefics3Config(
        text_config=dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="llama", tie_word_embeddings=False),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": tile, "patch_size": patch},
        scale_factor=scale, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
    )
    set_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    # images up to 4 tiles on their long side: a 80x60 photo is a 4x3 grid of crops and the whole
    image_processor = Idefics3ImageProcessor(do_image_splitting=True, size={"longest_edge": 4 * tile}, max_image_size={"longest_edge": tile})
    seq_len = (tile // patch) ** 2 // scale**2
    if smolvlm:
        video = SmolVLMVideoProcessor(size={"longest_edge": 4 * tile}, max_image_size={"longest_edge": tile})
        processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video, image_seq_len=seq_len,
                                     chat_template=family_template("idefics3"))
    else:
        processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len, chat_template=family_template("idefics3"))
    return save(out, model, processor, "idefics3", seed)
