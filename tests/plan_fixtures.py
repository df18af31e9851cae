"""Model directories for `tvad plan`'s tests: the 7B's shapes without its bytes, and broken copies.

    d = write_shaped_checkpoint(tmp / "qwen7b", qwen25vl_7b_config())   # config, real tokenizer, processor,
                                                                      # a SPARSE model.safetensors (16.6 GB, ~0 on disk)
    copy_model_dir(src, dst)                                          # a small checkpoint's copy, to break

The safetensors file has the header of the real model's state dict (every name and shape, counted on
the meta device) and holes where the tensors would be: `tvad plan` reads headers only, so it sees the
7B exactly as it would the downloaded one, and nothing of 16 GB is written or read.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import torch

DTYPES = {torch.bfloat16: ("BF16", 2), torch.float16: ("F16", 2), torch.float32: ("F32", 4)}


def write_sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.bfloat16) -> int:
    """A valid safetensors header for `shapes` followed by a hole of the tensors' size; returns that size."""
    name, b = DTYPES[dtype]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for k in sorted(shapes):
        n = math.prod(shapes[k]) * b
        header[k] = {"dtype": name, "shape": list(shapes[k]), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + off)
    return off


def write_shaped_checkpoint(out: str | Path, config, dtype: torch.dtype = torch.bfloat16) -> Path:
    """A Qwen2.5-VL directory of `config` (e.g. the 7B's): config.json, the real Qwen2.5 tokenizer and
    the 7B's processor (`tvad.model.widths`), and a sparse model.safetensors of the model's state dict."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tvad.model.widths import build_qwen25_tokenizer, qwen25vl_processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    config.save_pretrained(out)
    write_sparse_safetensors(out / "model.safetensors", shapes, dtype)
    qwen25vl_processor(out, build_qwen25_tokenizer())
    return out


def copy_model_dir(src: str | Path, dst: str | Path) -> Path:
    """A copy of a (small) model directory, to break in a test."""
    shutil.copytree(src, dst)
    return Path(dst)
