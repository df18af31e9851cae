"""tvad.model.widths: the real Qwen2.5 tokenizer (ids of the 7B's config), the 7B's processor
settings, the wide config, all offline (the checkpoint itself: tests/test_paper_widths.py)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket

import pytest

from tvad.model.backbone import qwen25vl_7b_config
from tvad.model.tiny import QWEN_SPECIAL_TOKENS
from tvad.model.widths import (QWEN25VL_MAX_PIXELS, QWEN25VL_MIN_PIXELS, WidthsError, qwen25_tokenizer,
                               qwen25vl_processor, wide_config, write_wide_checkpoint)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The tokenizer and processor written with every network connection refused (never downloads)."""
    d = tmp_path_factory.mktemp("widths")
    mp = pytest.MonkeyPatch()

    def refuse(*a, **k):
        raise OSError("tvad.model.widths must not touch the network")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    try:
        tok_dir = qwen25_tokenizer(d / "tok")
        proc_dir = qwen25vl_processor(d / "proc")
    finally:
        mp.undo()
    return tok_dir, proc_dir


def test_tokenizer_ids_are_the_7b_config_s(written):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(written[0], local_files_only=True)
    cfg = qwen25vl_7b_config()
    t = cfg.text_config
    assert len(tok) == 151665 and len(tok) <= t.vocab_size  # 151,643 BPE ranks + 22 specials; 152,064 rows
    ids = tok.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS)
    assert ids == list(range(151643, 151665))  # Qwen's order
    assert tok.convert_tokens_to_ids("<|vision_start|>") == cfg.vision_start_token_id == 151652
    assert tok.convert_tokens_to_ids("<|vision_end|>") == cfg.vision_end_token_id
    assert tok.convert_tokens_to_ids("<|video_pad|>") == cfg.video_token_id == 151656
    assert tok.convert_tokens_to_ids("<|image_pad|>") == cfg.image_token_id == 151655
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == t.eos_token_id == 151645
    assert tok.pad_token_id == t.bos_token_id == 151643
    s = "Is there any anomaly in this video? Yes: a cyclist rides across the plaza at 12:05, é 你好."
    ids = tok(s)["input_ids"]
    assert tok.decode(ids) == s and max(ids) < 151643 and len(ids) < len(s) // 2  # real merges, not bytes
    assert tok("Hello world!")["input_ids"] == [9707, 1879, 0]  # Qwen2.5's own ids
    assert tok("2024")["input_ids"] == [17, 15, 17, 19]  # Qwen2's pattern: one token per digit
    chat = tok.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}],
                                   tokenize=True, add_generation_prompt=True)
    chat = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "keys") else chat
    assert [151652, 151656, 151653] == [i for i in chat if i in (151652, 151656, 151653)]
    assert tok.decode(chat).endswith("<|im_start|>assistant\n")


def test_processor_has_the_7b_s_settings(written):
    from transformers import AutoProcessor

    p = AutoProcessor.from_pretrained(written[1], local_files_only=True)
    for sub in (p.image_processor, p.video_processor):
        assert sub.size["shortest_edge"] == QWEN25VL_MIN_PIXELS == 3136
        assert sub.size["longest_edge"] == QWEN25VL_MAX_PIXELS == 12845056
        assert (sub.patch_size, sub.temporal_patch_size, sub.merge_size) == (14, 2, 2)
        assert list(sub.image_mean) == pytest.approx([0.48145466, 0.4578275, 0.40821073])
        assert list(sub.image_std) == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert p.tokenizer.convert_tokens_to_ids("<|video_pad|>") == 151656


def test_wide_config_cuts_only_the_decoder(tmp_path):
    c, full = wide_config(2), qwen25vl_7b_config()
    t, v = c.text_config, c.vision_config
    assert t.num_hidden_layers == 2 and len(t.layer_types) == 2 and t.max_window_layers == 2
    for k in ("hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "num_key_value_heads"):
        assert getattr(t, k) == getattr(full.text_config, k)
    assert (v.hidden_size, v.depth, list(v.fullatt_block_indexes)) == (1280, 32, [7, 15, 23, 31])
    assert c.tie_word_embeddings is False
    with pytest.raises(WidthsError, match="decoder_layers"):
        wide_config(0)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "junk").write_text("")
    with pytest.raises(WidthsError, match="not empty"):
        write_wide_checkpoint(tmp_path / "x")
