"""Reading a Qwen2.5-VL checkpoint's weights with one copy in memory, and handing memory back between
one backbone and the next (one backbone in memory at a time: docs/paper-memory.md).

`tvad.model.backbone.from_pretrained` is the one loader; this module is its weight-reading half.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import torch
from safetensors import safe_open


def _libc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()  # glibc, for malloc_trim in free_memory (None elsewhere)


def free_memory() -> None:
    """Collect what is no longer referenced (a trainer's or a model's reference cycles) and return the
    accelerator's cached blocks: called between one backbone and the next (one in memory at a time)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _LIBC is not None:  # hand freed heap back to the OS (glibc keeps it for reuse otherwise)
        _LIBC.malloc_trim(0)


def load_qwen(src: str, dtype: torch.dtype, attn_implementation: str, local_files_only: bool):
    """(model, weights_dir): the Qwen2_5_VLForConditionalGeneration in `src` (a local folder, or a hub
    id: its cached snapshot, else transformers fetches it) on the CPU, and the local folder its
    weights were read from (None for a fetched hub id)."""
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    wdir = src if Path(src).is_dir() else _hub_snapshot(src)
    # transformers reads local safetensors through mmap and keeps every file mapped until the whole
    # model is loaded: peak RSS twice the checkpoint (7B-wide: 8.3 GB for 4.2 GB). Its own lazy slices
    # over pread (safetensors' backend="pread"), handed over as `state_dict`, read each tensor into
    # its parameter alone: peak RSS the checkpoint plus one tensor. Same loader, same key conversions.
    files = _weight_files(wdir)
    if files:
        handles = [safe_open(str(f), framework="pt", device="cpu", backend="pread") for f in files]
        try:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                None, config=Qwen2_5_VLConfig.from_pretrained(wdir), dtype=dtype,
                attn_implementation=attn_implementation, state_dict={k: h.get_slice(k) for h in handles for k in h.keys()})
        finally:
            del handles
        if (Path(wdir) / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(wdir)
        model.config._name_or_path = model.name_or_path = src  # as from_pretrained(src) records it
    else:  # a hub id not in the cache: transformers fetches it
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            src, dtype=dtype, attn_implementation=attn_implementation, local_files_only=local_files_only)
    return model, wdir


def _weight_files(folder: str | None) -> list[Path]:
    """The safetensors files of the model in `folder` (its index's shards, or model.safetensors), [] if
    there are none (transformers then finds the weights itself)."""
    if not folder:
        return []
    d = Path(folder)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        return [d / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [d / "model.safetensors"] if (d / "model.safetensors").is_file() else []


def _hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot folder of a hub id (where from_pretrained read its files), or None."""
    from huggingface_hub import try_to_load_from_cache

    f = try_to_load_from_cache(repo_id, "config.json")
    return str(Path(f).parent) if isinstance(f, str) else None
