"""The tiny backbone of the `cpu` preset: Qwen2.5-VL's architecture at small sizes, built offline.

    bb = build_tiny(texts=captions, vocab_size=1024, seed=0)     # a randomly initialised tiny Qwen2.5-VL
    bb.save_pretrained("assets/tiny-qwen2.5-vl")                   # `tvad.train.pretrain_tiny` trains it first

Real transformers classes throughout (`Qwen2_5_VLForConditionalGeneration`, `Qwen2_5_VLProcessor`);
the tokenizer is a byte-level BPE trained on the given texts with Qwen's special tokens and Qwen2.5-VL's
chat template, so everything downstream treats it like the 7B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from tvad.model.backbone import Backbone
from tvad.prompts import all_template_text

# Qwen2.5's special tokens, in Qwen's order (ids 151643-151664 in the real vocabulary).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]


def qwen_chat_template() -> str:
    """Qwen2.5-VL's chat template, as TRL ships it (trl/chat_templates/qwen2_5_vl.jinja)."""
    import trl

    p = Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja"
    if not p.exists():
        raise FileNotFoundError(f"{p}: TRL's Qwen2.5-VL chat template is missing (trl >= 1.16 ships it)")
    return p.read_text()


def build_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 1024):
    """A byte-level BPE trained on `texts` (deterministic), plus Qwen's special tokens appended
    after the merges (as in Qwen) and Qwen2.5-VL's chat template. Offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = list(texts) + _BASE_TEXT
    tok.train_from_iterator(sorted(set(corpus)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   errors="replace", clean_up_tokenization_spaces=False,
                                   model_max_length=32768)
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    fast.chat_template = qwen_chat_template()
    return fast


_BASE_TEXT = [
    "You are a helpful assistant.", "Describe the video.", "What happens in this video?",
    "Is there an anomaly in the video? Yes. No.", "Where is the anomaly? top left right bottom centre middle",
    "a person walks from left to right slowly quickly, a car drives up down across the road",
    "red green blue yellow white black grey orange purple pink brown cyan",
    "0 1 2 3 4 5 6 7 8 9 10 frame frames second seconds",
]


def tiny_config(vocab_size: int, token_ids: dict[str, int], depth: int = 4, vision_hidden: int = 128,
                vision_heads: int = 4, fullatt_block_indexes: Sequence[int] = (1, 3), text_hidden: int = 128,
                text_layers: int = 2, text_heads: int = 4, text_kv_heads: int = 2, window_size: int = 112):
    """Qwen2.5-VL's architecture at small sizes: a `depth`-block ViT whose blocks in
    `fullatt_block_indexes` attend over the whole frame pair (the others within 112-px windows,
    as in the 7B), a merger to `text_hidden`, and a small decoder with multimodal RoPE."""
    from transformers import Qwen2_5_VLConfig

    head_dim = text_hidden // text_heads
    half = head_dim // 2  # mrope sections split the rotary half-dimension (7B: 16/24/24 of 64)
    sec_t = half // 4
    sec_h = (half - sec_t) // 2
    mrope = [sec_t, sec_h, half - sec_t - sec_h]
    return Qwen2_5_VLConfig(
        vision_config=dict(depth=depth, hidden_size=vision_hidden, hidden_act="silu",
                           intermediate_size=vision_hidden * 2, num_heads=vision_heads, in_channels=3,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2,
                           window_size=window_size, out_hidden_size=text_hidden,
                           fullatt_block_indexes=list(fullatt_block_indexes)),
        text_config=dict(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=text_hidden * 3,
                         num_hidden_layers=text_layers, num_attention_heads=text_heads,
                         num_key_value_heads=text_kv_heads, max_position_embeddings=4096, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
                         bos_token_id=token_ids["<|endoftext|>"], eos_token_id=token_ids["<|im_end|>"],
                         pad_token_id=token_ids["<|endoftext|>"], use_sliding_window=False,
                         tie_word_embeddings=True),
        image_token_id=token_ids["<|image_pad|>"], video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"], vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny(texts: Sequence[str] = (), vocab_size: int = 1024, seed: int = 0, max_pixels: int = 224 * 224,
               **config_kwargs) -> Backbone:
    """A randomly initialised tiny Qwen2.5-VL (real transformers classes) with its tokenizer and
    processor, deterministic for a given seed. `pretrain_tiny` trains it; `save_pretrained` +
    `from_pretrained` round-trip it like any Qwen2.5-VL checkpoint."""
    from transformers import (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = build_tiny_tokenizer(list(texts) + _prompt_texts(), vocab_size=vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    n = len(tokenizer)
    cfg = tiny_config(vocab_size=((n + 63) // 64) * 64, token_ids=ids, **config_kwargs)  # padded rows, as Qwen
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=tokenizer.chat_template,
    )
    return Backbone(model, processor, source=None, max_pixels=max_pixels)


def _prompt_texts() -> list[str]:
    return all_template_text()
