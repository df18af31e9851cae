"""tvad.corpus.annotators.local: the local Qwen2.5-VL route on a tiny randomly initialised checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.corpus import AnnotatorError, make_annotator


# -- the local route: a tiny randomly initialised Qwen2.5-VL saved to disk ----------------------

def _tiny_qwen(path):
    """A tiny random Qwen2.5-VL with a word-level tokenizer, saved as a checkpoint folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    words = ["{", "}", "[", "]", ":", ",", '"', "instances", "category", "box", "person", "car", "user",
             "assistant", "list", "objects", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    vocab = {w: i for i, w in enumerate(specials + words + ["[UNK]"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=specials[1:])
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, rope_parameters={
                             "rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.save_pretrained(path)
    ip = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    try:
        from transformers import Qwen2VLVideoProcessor

        proc = Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=Qwen2VLVideoProcessor())
    except Exception:
        proc = Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok)
    proc.save_pretrained(path)


def test_local_tiny_qwen_garbage_is_counted_not_raised(tmp_path):
    pytest.importorskip("transformers")
    path = tmp_path / "tiny-qwen"
    try:
        _tiny_qwen(path)
    except Exception as e:  # pragma: no cover - a transformers API drift in building the fixture
        pytest.fail(f"could not build the tiny Qwen2.5-VL fixture: {type(e).__name__}: {e}")
    ann = make_annotator("local", path=str(path), max_new_tokens=12, max_pixels=112 * 112)
    img = (np.random.default_rng(0).random((60, 90, 3)) * 255).astype(np.uint8)
    recs = [ann.describe_frame(img, "list objects", video="v", frame=f) for f in range(2)]
    for r in recs:
        assert r.status in ("ok", "invalid_answer"), r.error  # random weights: almost surely garbage
        assert r.attempts == 1 and r.raw is not None
    assert any(r.status == "invalid_answer" for r in recs)
    with pytest.raises(AnnotatorError, match="cannot load"):
        make_annotator("local", path=str(tmp_path / "nope")).describe_frame(img, "p", video="v", frame=0)
