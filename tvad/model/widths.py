"""A random Qwen2.5-VL at the 7B's widths, with the real Qwen2.5 tokenizer and the 7B's processor
settings, written offline so that tests and rehearsals run the `paper` preset's code on the 7B's
shapes without downloading the 7B.

    path = write_wide_checkpoint("/tmp/wide")           # ~4.5 GB: the 7B with a 2-layer decoder, bf16
    bb = tvad.model.backbone.from_pretrained(path)      # loads like Qwen/Qwen2.5-VL-7B-Instruct

What matches the 7B: the vision tower (1280 wide, 32 blocks, full attention at 7/15/23/31), the
decoder's width (3584), heads, RoPE, the 152,064-row vocabulary and the untied head, the
tokenizer (Qwen's 151,643 BPE ranks from `qwen.tiktoken`, which the PyPI package `dashscope`
ships, then Qwen2.5-VL's 22 special tokens at ids 151643-151664 and its chat template) and the
processor (min_pixels 3136, max_pixels 12845056, CLIP mean / std). What does not: the decoder has
`decoder_layers` layers (the 7B: 28) and every weight is random. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from tvad.model.backbone import qwen25vl_7b_config
from tvad.model.tiny import QWEN_SPECIAL_TOKENS, qwen_chat_template

QWEN_FIRST_SPECIAL_ID = 151643  # <|endoftext|>: the first id after Qwen's 151,643 BPE ranks
# Qwen2.5-VL-7B-Instruct's preprocessor_config.json (also what its video processor reads)
QWEN25VL_MIN_PIXELS = 3136  # 4 merged tokens of 28 x 28 pixels
QWEN25VL_MAX_PIXELS = 12845056  # 16,384 merged tokens of 28 x 28 pixels
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # the image_mean of the 7B's processor (CLIP's)
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]  # the image_std of the 7B's processor (CLIP's)
# Qwen2.5-VL's additional_special_tokens (its tokenizer_config.json); the rest (<tool_call> .. <|file_sep|>)
# are added tokens that are not special, as in Qwen's tokenizer
_SPECIAL = set(QWEN_SPECIAL_TOKENS[:14])
_COMPLETE = ".tvad-wide-complete"  # marker file: the checkpoint folder was written to the end


class WidthsError(RuntimeError):
    """The wide checkpoint cannot be written (a missing package, a bad folder)."""


def qwen_tiktoken_path() -> Path:
    """Qwen's `qwen.tiktoken` (151,643 base64 BPE ranks) as the `dashscope` package ships it."""
    try:
        import dashscope
    except ImportError as e:
        raise WidthsError("the real Qwen2.5 tokenizer needs the package `dashscope` (it ships Qwen's "
                          "qwen.tiktoken): pip install dashscope (it is in the [dev] extra)") from e
    p = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"
    if not p.is_file():
        raise WidthsError(f"{p}: the installed `dashscope` does not ship qwen.tiktoken")
    return p


def build_qwen25_tokenizer():
    """The real Qwen2.5 tokenizer (a `Qwen2Tokenizer`: Qwen2's pre-tokenizer pattern, NFC,
    byte-level BPE) from `qwen.tiktoken`, with the special tokens at ids 151643-151664 in Qwen's
    order, eos <|im_end|>, pad <|endoftext|> and Qwen2.5-VL's chat template."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    try:
        vocab, merges = TikTokenConverter(str(qwen_tiktoken_path())).extract_vocab_merges_from_model(
            str(qwen_tiktoken_path()))
    except ValueError as e:  # tiktoken missing
        raise WidthsError(f"reading qwen.tiktoken: {e}") from e
    if len(vocab) != QWEN_FIRST_SPECIAL_ID:
        raise WidthsError(f"{qwen_tiktoken_path()}: {len(vocab)} BPE ranks, Qwen2.5 has {QWEN_FIRST_SPECIAL_ID}")
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                         unk_token=None, errors="replace", model_max_length=131072,
                         clean_up_tokenization_spaces=False, split_special_tokens=False)
    tok.add_tokens([AddedToken(t, special=t in _SPECIAL, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                            "additional_special_tokens": [t for t in QWEN_SPECIAL_TOKENS[1:14]]})
    tok.chat_template = qwen_chat_template()
    got = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    want = {t: QWEN_FIRST_SPECIAL_ID + i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}
    if got != want:
        raise WidthsError(f"special token ids {got} differ from Qwen2.5's {want}")
    return tok


def qwen25_tokenizer(out_dir: str | os.PathLike) -> Path:
    """Write the real Qwen2.5 tokenizer (`build_qwen25_tokenizer`) to `out_dir`; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_qwen25_tokenizer().save_pretrained(out)
    return out


def build_qwen25vl_processor(tokenizer=None):
    """Qwen2.5-VL-7B-Instruct's processor: its image and video processors at the 7B's public
    settings (min_pixels 3136, max_pixels 12845056, patch 14, temporal patch 2, merge 2, CLIP
    mean / std) around `tokenizer` (default: the real Qwen2.5 tokenizer)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tok = tokenizer if tokenizer is not None else build_qwen25_tokenizer()
    common = dict(size={"shortest_edge": QWEN25VL_MIN_PIXELS, "longest_edge": QWEN25VL_MAX_PIXELS},
                  patch_size=14, temporal_patch_size=2, merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tok,
                               video_processor=Qwen2VLVideoProcessor(**common), chat_template=tok.chat_template)


def qwen25vl_processor(out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write the 7B's processor (`build_qwen25vl_processor`: preprocessor_config.json,
    video_preprocessor_config.json, the tokenizer and chat template) to `out_dir`; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_qwen25vl_processor(tokenizer).save_pretrained(out)
    return out


def wide_config(decoder_layers: int = 2):
    """`qwen25vl_7b_config()` with the decoder cut to `decoder_layers` layers (and what follows
    the layer count: layer_types, max_window_layers); everything else the 7B's."""
    if int(decoder_layers) < 1:
        raise WidthsError(f"decoder_layers must be >= 1, got {decoder_layers}")
    cfg = qwen25vl_7b_config()
    t = cfg.text_config
    n = int(decoder_layers)
    t.num_hidden_layers = n
    t.max_window_layers = min(int(t.max_window_layers), n)
    if getattr(t, "layer_types", None) is not None:
        t.layer_types = list(t.layer_types)[:n]
    t.pad_token_id = QWEN_FIRST_SPECIAL_ID  # <|endoftext|>, as the 7B's generation config pads
    return cfg


def _complete(p: Path) -> bool:
    return (p / _COMPLETE).is_file() and (p / "config.json").is_file()


def write_wide_checkpoint(out_dir: str | os.PathLike, decoder_layers: int = 2, dtype: torch.dtype = torch.bfloat16,
                          seed: int = 0) -> Path:
    """A random Qwen2.5-VL at the 7B's widths with a `decoder_layers`-layer decoder, saved as
    safetensors with the real tokenizer and the 7B's processor, so that
    `tvad.model.backbone.from_pretrained(out_dir)` loads it like the 7B. Idempotent (a complete
    folder is kept as it is; it records its settings and a different request raises) and atomic
    (written to a temporary sibling folder, then renamed). Weights: N(0, 0.02) for matrices and
    embeddings, ones for norms, from `seed` (deterministic)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    want = {"decoder_layers": int(decoder_layers), "dtype": str(dtype).removeprefix("torch."), "seed": int(seed)}
    if _complete(out):
        have = json.loads((out / _COMPLETE).read_text())
        if have != want:
            raise WidthsError(f"{out}: a wide checkpoint written with {have}, asked for {want}; use another folder")
        return out
    if out.exists() and any(out.iterdir()):
        raise WidthsError(f"{out}: exists, is not empty and holds no complete wide checkpoint")
    cfg = wide_config(decoder_layers)
    tok = build_qwen25_tokenizer()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with torch.device("meta"):
            model = Qwen2_5_VLForConditionalGeneration(cfg)
        # (buffers such as RoPE's inverse frequencies are not saved: from_pretrained recomputes them)
        model = model.to_empty(device="cpu").to(dtype)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 1:  # norms' weights (ones) and biases (zeros)
                    p.fill_(1.0 if "norm" in name else 0.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02).to(dtype))
        model.generation_config.pad_token_id = QWEN_FIRST_SPECIAL_ID
        model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), QWEN_FIRST_SPECIAL_ID]
        model.save_pretrained(tmp)
        del model
        qwen25vl_processor(tmp, tok)
        (tmp / _COMPLETE).write_text(json.dumps(want))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
