"""Delta checkpoints: a stage-2 backbone stored as what stage 2 changed against its base Qwen2.5-VL
(the LoRA-merged decoder tensors, the prompt tokens' embedding and lm_head rows), with the base
referenced by path and content hash (`stage2.checkpoints: delta`, the default; `full` writes whole
merges). At the 7B's widths a full merge is ~16.6 GB, a delta ~0.8 GB (q/v LoRA on 28 layers).

    info = save_delta(qwen, base_dir, ckpt_dir)     # ckpt_dir/backbone/ (config, processor), delta.safetensors
    bb = load_delta(ckpt_dir, info, dtype="bfloat16", device="cuda")   # the base + the delta: a Backbone

The base's files are hashed whole (sha256 of every *.safetensors file and the index), once per process
(memoised by path, size and mtime): a header-only hash would take a base re-saved with other values in
the same shapes (another fine-tune of the same layout) for the right one, and rebuild a wrong model
without a word. At the 7B's 16.6 GB that is ~10-20 s of reading per process (docs/paper-memory.md).

Tensors are compared under the names transformers writes (`revert_weight_conversion`, what its own
`save_pretrained` does), so a base in the original Qwen layout (`model.layers.*`, `visual.*`) and one
re-saved by transformers v5 both serve.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tvad.io import REPO_ROOT, resolve_path
from tvad.model.ahd import CheckpointError
from tvad.model.backbone import Backbone, from_pretrained

DELTA_FILE = "delta.safetensors"  # in the checkpoint directory, beside backbone/ (config and processor only)
DELTA_FORMAT = "tvad-delta-1"  # the delta file's metadata "format"
ROWS, INDEX = "@rows", "@index"  # key suffixes of a row patch: the changed rows' values and their indices
_HASHES: dict[tuple, str] = {}  # per process: (file, size, mtime_ns) -> sha256 hex


def weight_files(base: str | os.PathLike) -> list[Path]:
    """The files of a base checkpoint directory that hold (or index) its weights."""
    d = Path(base)
    return sorted(d.glob("*.safetensors")) + sorted(d.glob("*.safetensors.index.json"))


def base_hash(base: str | os.PathLike) -> dict[str, str]:
    """{file name: sha256} of `base`'s weight files, each read whole once per process."""
    out = {}
    for f in weight_files(base):
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _HASHES:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
            _HASHES[key] = h.hexdigest()
        out[f.name] = _HASHES[key]
    return out


def delta_base(backbone: Backbone) -> Path | None:
    """The directory a delta of `backbone` can reference: where its weights were read from (a local
    folder, or a hub id's cached snapshot) if it holds safetensors weights; None for one built in memory."""
    d = getattr(backbone, "weights_dir", None) or backbone.source
    src = Path(d) if d else None
    if src is None or not src.is_dir() or not list(src.glob("*.safetensors")):
        return None
    return src.resolve()


def _file_keys(qwen) -> dict[str, str]:
    """{model state_dict key: key in a transformers-written file} (tied tensors map each of their keys)."""
    from transformers.core_model_loading import revert_weight_conversion

    sd = qwen.state_dict()
    by_ptr: dict[tuple, list[str]] = {}
    for k, t in sd.items():
        by_ptr.setdefault((t.data_ptr(), tuple(t.shape)), []).append(k)
    out = {}
    for fk, t in revert_weight_conversion(qwen, dict(sd)).items():
        for mk in by_ptr.get((t.data_ptr(), tuple(t.shape)), []):
            out[mk] = fk
    return out


def _base_index(base: Path) -> dict[str, Path]:
    """{tensor key: the base file holding it}."""
    idx = {}
    for f in sorted(base.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                idx[k] = f
    return idx


class _BaseRows:
    """Rows of one base tensor, each read opening the file anew: a slice of a safetensors mmap keeps its
    pages resident until the file is closed (reading a whole base that way holds it all), and safetensors'
    pread backend reads the whole tensor for any slice (the 7B's 1 GB tables)."""

    def __init__(self, file: Path, key: str):
        self.file, self.key = str(file), key
        with safe_open(self.file, framework="pt", device="cpu") as st:
            self.shape = tuple(st.get_slice(key).get_shape())

    def __getitem__(self, s):
        with safe_open(self.file, framework="pt", device="cpu") as st:
            return st.get_slice(self.key)[s]


def _changed_rows(t: torch.Tensor, base_slice, n: int, chunk_bytes: int = 64 << 20) -> torch.Tensor:
    """(k,) int64: the rows i < n where `t[i]` differs from the base's row i (cast to t's dtype), read and
    compared `chunk_bytes` of rows at a time (never the whole base tensor: the 7B's tables are 1 GB)."""
    step = max(1, chunk_bytes // max(1, t[0].numel() * t.element_size()))
    out = []
    for a in range(0, n, step):
        b = base_slice[a:min(n, a + step)].to(t.dtype)
        out.append((t[a:a + len(b)].cpu() != b).reshape(len(b), -1).any(1).nonzero().flatten() + a)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def save_delta(qwen, base: str | os.PathLike, out_dir: str | os.PathLike, processor=None) -> dict:
    """Write `out_dir/DELTA_FILE`: every tensor of `qwen` (a Qwen2_5_VLForConditionalGeneration without
    the prompt injector) that differs from the base's, whole, or as a row patch (`@rows` (n, ...) and
    `@index` (n,) int64) when at most half its rows differ or it grew along dim 0 (an embedding table
    resized for the prompt tokens); tensors the base lacks are stored whole. Also `out_dir/backbone/`:
    the config and (if given) the processor, no weights. Returns tvad.json's "backbone_storage"
    ({"storage": "delta", "base": path, "sha256": {file: hash}, "tensors": n, "bytes": n})."""
    base, out = Path(base), Path(out_dir)
    (out / "backbone").mkdir(parents=True, exist_ok=True)
    qwen.config.save_pretrained(out / "backbone")
    if getattr(qwen, "generation_config", None) is not None:
        qwen.generation_config.save_pretrained(out / "backbone")
    if processor is not None:
        processor.save_pretrained(out / "backbone")
    index, keys, sd = _base_index(base), _file_keys(qwen), qwen.state_dict()
    groups: dict[tuple, list[str]] = {}  # tied tensors once
    for k, t in sd.items():
        groups.setdefault((t.data_ptr(), tuple(t.shape)), []).append(k)
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for names in groups.values():
        mk = next((k for k in names if keys.get(k) in index), names[0])
        t = sd[mk].detach()
        fk = keys.get(mk)
        if fk not in index:
            tensors[mk] = t.cpu().contiguous()
            continue
        sl = _BaseRows(index[fk], fk)
        bshape = sl.shape
        if t.dim() < 2:  # norms, biases: small, compared whole
            if tuple(t.shape) == bshape and torch.equal(t.cpu(), sl[:].to(t.dtype)):
                continue
            rows = None
        elif tuple(t.shape) == bshape:
            rows = _changed_rows(t, sl, len(t))
            if not len(rows):
                continue
        elif t.shape[1:] == bshape[1:] and t.shape[0] > bshape[0]:  # grown along dim 0 (prompt tokens)
            rows = torch.cat([_changed_rows(t, sl, bshape[0]), torch.arange(bshape[0], t.shape[0])])
            shapes[mk] = list(t.shape)
        else:
            raise CheckpointError(f"{base}: tensor {fk} has shape {bshape}, the model's {mk} "
                                  f"{tuple(t.shape)}: not a delta of this base (set stage2.checkpoints: full)")
        t = t.cpu()
        if rows is not None and (2 * len(rows) <= len(t) or mk in shapes):
            tensors[mk + ROWS] = t[rows].contiguous()
            tensors[mk + INDEX] = rows.to(torch.int64).contiguous()
        else:
            tensors[mk] = t.contiguous()
    path = out / DELTA_FILE
    save_file(tensors, str(path), metadata={"format": DELTA_FORMAT, "shapes": json.dumps(shapes)})
    # a base inside the checkout is recorded relative to it (a run directory stays usable from another clone)
    ref = str(base.relative_to(REPO_ROOT)) if base.is_relative_to(REPO_ROOT) else str(base)
    return {"storage": "delta", "base": ref, "sha256": base_hash(base), "tensors": len(tensors),
            "bytes": path.stat().st_size}


def check_base(ckpt: Path, info: dict) -> Path:
    """The base directory `info` (tvad.json's "backbone_storage") references, checked to be there with the
    same content; a `CheckpointError` naming the checkpoint and what differs otherwise."""
    base = resolve_path(str(info.get("base")))  # relative: to the repository root
    how = ("this checkpoint stores only what stage 2 changed against that base (tvad.json 'backbone_storage'); "
           "put the base back, or re-save the model with stage2.checkpoints: full")
    if not info.get("base") or not base.is_dir() or not weight_files(base):
        raise CheckpointError(f"{ckpt}: its base backbone {base} is missing; {how}")
    want = dict(info.get("sha256") or {})
    got = base_hash(base)
    if got != want:
        diff = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want.get(k))
        raise CheckpointError(f"{ckpt}: its base backbone {base} has changed (sha256 of {', '.join(diff[:3])} "
                              f"differs from the one recorded at saving); {how}")
    return base


def load_delta(ckpt: str | os.PathLike, info: dict, dtype: str = "float32", device: str = "auto",
               max_pixels: int | None = None) -> Backbone:
    """The checkpoint's backbone: the base (`check_base`) loaded as `backbone.from_pretrained` does, its
    tables grown to the saved shapes, the delta written in, the checkpoint's processor (the prompt
    tokens). `source` stays the base, so a later save is again a delta of it."""
    from transformers import AutoProcessor

    ckpt = Path(ckpt)
    base = check_base(ckpt, info)
    f = ckpt / DELTA_FILE
    try:
        with safe_open(str(f), framework="pt") as st:
            meta = st.metadata() or {}
            delta = {k: st.get_tensor(k) for k in st.keys()}
    except Exception as e:
        raise CheckpointError(f"{f}: corrupt safetensors file (truncated or garbled: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if meta.get("format") != DELTA_FORMAT:
        raise CheckpointError(f"{f}: format {meta.get('format')!r}, expected {DELTA_FORMAT!r}")
    bad = [k for k, v in delta.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{f}: non-finite weights (NaN/inf) in {', '.join(sorted(bad)[:3])}")
    bb = from_pretrained(base, dtype=dtype, device=device, max_pixels=max_pixels)
    qwen = bb.model
    rows = {tuple(s)[0] for s in json.loads(meta.get("shapes") or "{}").values()}
    if rows:  # the embedding table grew for the prompt tokens (lm_head with it)
        qwen.resize_token_embeddings(max(rows), mean_resizing=False)
    sd = qwen.state_dict()
    with torch.no_grad():
        for k, v in delta.items():
            if k.endswith(INDEX):
                continue
            name = k[: -len(ROWS)] if k.endswith(ROWS) else k
            if name not in sd:
                raise CheckpointError(f"{f}: tensor {name} is not in the base model {base}")
            t = sd[name]
            if k.endswith(ROWS):
                idx = delta[name + INDEX]
                if v.shape[1:] != t.shape[1:] or (len(idx) and int(idx.max()) >= len(t)):
                    raise CheckpointError(f"{f}: rows of {name} {tuple(v.shape)} do not fit its {tuple(t.shape)}")
                t[idx.to(t.device)] = v.to(t.device, t.dtype)
            elif v.shape != t.shape:
                raise CheckpointError(f"{f}: {name} is {tuple(v.shape)}, the base model's {tuple(t.shape)}")
            else:
                t.copy_(v.to(t.device, t.dtype))
    del delta
    processor = AutoProcessor.from_pretrained(ckpt / "backbone", local_files_only=True)
    return Backbone(qwen, processor, source=str(base), max_pixels=max_pixels)
