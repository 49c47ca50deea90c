"""A real tokenizer trained here in about a second: byte-level BPE on a small product/complaint corpus,
wrapped for transformers, with the special tokens a family's processor and chat template need."""
from __future__ import annotations

_CORPUS_LINES = [
    "The bottle of shampoo arrived leaking and the box was wet.",
    "The package was torn open on one side and the lid was cracked.",
    "The box came badly dented, crushed in the middle.",
    "I ordered the 250 ml conditioner but received a 100 ml shampoo.",
    "Brand: Aurelia. Size: 250 ml. Color: Blue. Count: 1.",
    "What is the product type shown in the image? It is a bottle of body lotion.",
    "How many items are in the picture? There are two jars of peanut butter.",
    "Is the packaging damaged? Yes, the carton is torn near the top.",
    "Does the image match the title Nordbrook Dark Roast Ground Coffee 500 g? No.",
    "Extract the attributes as JSON: ProductType, Name, Brand, Color, Count, Size, ExpiryDate, TargetGender.",
    "I cannot tell the expiry date from the image; it is not visible.",
    "Agent: Hello, how can I help you today? Customer: My order arrived damaged.",
    "The vitamin tablets were missing from the sealed container.",
    "Laundry detergent, breakfast cereal, ground coffee, hair care, skin care, household, grocery, health.",
    "Red, green, blue, purple, orange, teal, brown, pink, white, black, grey, silver.",
    "OCR Tokens: SUNVALE LAVENDER BODY LOTION 300 ml",
    "Aurelia Nordbrook Sunvale Pinecrest Lumio Kestrel Brightleaf Oakhaven",
    "Argan Oil, Fresh Mint, Classic, Honey Oat, Citrus, Lavender, Dark Roast, Original",
    "Shampoo, Conditioner, Body Lotion, Ground Coffee, Breakfast Cereal, Laundry Detergent, Vitamin C Tablets",
    "100 ml, 250 ml, 400 ml, 500 g, 1 kg, 1.5 kg, 3 kg, 60 Count, 120 Count, 12 oz",
    # the VLM judge's replies (curation/judge.py), one token each in a real tokenizer: so in this one too
    "Yes. No. Yes, it does. No, it does not. Answer yes or no: yes. Answer yes or no: no.",
    "yes, after a line break as a chat turn starts it.",
    "no, after a line break as a chat turn starts it.",
    "No, as a reply that starts a line.",
    "Yes, as a reply that starts a line.",
]


def train_tokenizer(vocab_size: int = 800, extra_special: dict[str, str] | None = None, *, more_special: tuple[str, ...] = (),
                    bos: str | None = "<s>", eos: str = "</s>", pad: str = "<pad>", unk: str = "<unk>", add_bos: bool = True):
    """``extra_special``: named special tokens the processor reads as attributes (``image_token`` ...);
    ``more_special``: other special tokens the chat template writes (``<|im_start|>`` ...). ``add_bos``:
    put the BOS in front of every text encoded with special tokens, as Llama/Mistral tokenizers do (Qwen's
    add none)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    basics = [t for t in (unk, bos, eos, pad) if t]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(dict.fromkeys(basics)), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS_LINES * 20, trainer)
    if bos and add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad, padding_side="right",
        extra_special_tokens=extra_special or {},
    )
    if more_special:
        wrapped.add_special_tokens({"additional_special_tokens": list(more_special)}, replace_extra_special_tokens=False)
    return wrapped
