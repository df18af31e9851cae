"""`tvad plan`'s checks, before any GPU hour: the model directory and the dataset trees.

    model, problems = check_model("Qwen/Qwen2.5-VL-7B-Instruct")   # ModelInfo, ["<dir>: ...", ...]
    index, notes, problems = check_data(cfg.data, seed=cfg.seed)     # ClipIndex (or None), notes, problems

Model directory: config.json parses as a Qwen2.5-VL config; safetensors weights present (an index's
shards all there) whose headers (read alone: 8 bytes + JSON, never the tensors) hold exactly the
config's parameter count (`tvad.model.flops.parameter_counts`); a tokenizer whose special tokens
<|vision_start|>, <|vision_end|>, <|video_pad|>, <|image_pad|> have the config's ids and whose eos is the
config's; a processor config whose patch, merge and temporal sizes are the vision tower's.
Datasets: the run's clip index built as notebook 01 builds it (`tvad.data.protocol.build_index`, the
loaders' own validation: split files, video headers, mask / label files), every bad item collected
(strict=False) so that each is one line; a video too short for a clip is a note, not a problem.
Every problem is one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvad.data.protocol import ClipIndex, build_index
from tvad.data.record import DataError
from tvad.data.video import VideoError
from tvad.io import resolve_model_path, resolve_path
from tvad.model.flops import parameter_counts

SPECIAL_TOKENS = {"<|vision_start|>": "vision_start_token_id", "<|vision_end|>": "vision_end_token_id",
                  "<|video_pad|>": "video_token_id", "<|image_pad|>": "image_token_id"}  # token -> config field
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")
DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class ModelInfo:
    """What the model directory holds (fields None where a check could not read it)."""

    source: str  # the backbone.path asked for
    path: Path | None = None  # the local directory (a hub id resolved in the Hugging Face cache)
    config: Any = None  # transformers' Qwen2_5_VLConfig
    params: dict = field(default_factory=dict)  # parameter_counts(config)
    weight_files: list = field(default_factory=list)  # safetensors file names
    weight_numel: int = 0  # parameters in the safetensors headers
    weight_bytes: int = 0  # bytes of those tensors (the files less their headers)
    weight_dtypes: dict = field(default_factory=dict)  # {safetensors dtype: parameters}
    tokenizer_len: int | None = None  # tokens of the tokenizer (before the prompt tokens are added)
    processor: dict | None = None  # {"patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"}


def model_dir(source: str) -> Path | None:
    """A local directory for `backbone.path`: the folder itself, or a hub id's snapshot in the Hugging
    Face cache (never downloaded here); None when neither exists."""
    p = resolve_model_path(source)
    if isinstance(p, Path):
        return p
    if "/" not in str(source) or Path(str(source)).is_absolute() or str(source).startswith("."):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception:  # not cached (or no hub client): the caller reports it
        return None


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (the tensors are not read). Raises ValueError naming
    the file when it is not one or is truncated."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file ({size} bytes)")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, 100 * 2**20):
            raise ValueError(f"{path}: not a safetensors file (header length {n} for a {size}-byte file)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: unreadable safetensors header ({e})") from None
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ValueError(f"{path}: truncated ({size} bytes, its header needs {8 + n + end})")
    return header


def _weights(info: ModelInfo, d: Path, problems: list[str]) -> None:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            problems.append(f"{index}: unreadable weight index ({type(e).__name__}: {e})")
            return
        missing = [s for s in shards if not (d / s).is_file()]
        if missing:
            problems.append(f"{index}: {len(missing)} of {len(shards)} weight shards missing ({', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''})")
            return
        files = [d / s for s in shards]
    else:
        files = sorted(d.glob("*.safetensors"))
    if not files:
        other = [p.name for p in d.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        problems.append(f"{d}: no safetensors weights (model.safetensors or a sharded index)"
                        + (f"; found {', '.join(other[:3])} (pickle formats are not loaded)" if other else ""))
        return
    for f in files:
        try:
            h = safetensors_header(f)
        except (OSError, ValueError) as e:
            problems.append(str(e) if isinstance(e, ValueError) else f"{f}: unreadable ({e})")
            continue
        info.weight_files.append(f.name)
        for k, v in h.items():
            if k == "__metadata__":
                continue
            n = math.prod(int(s) for s in v["shape"])
            info.weight_numel += n
            info.weight_bytes += int(v["data_offsets"][1]) - int(v["data_offsets"][0])
            info.weight_dtypes[v["dtype"]] = info.weight_dtypes.get(v["dtype"], 0) + n
    want = info.params.get("total")
    if want and len(info.weight_files) == len(files) and info.weight_numel != want:
        what = "missing" if info.weight_numel < want else "more than"
        problems.append(f"{d}: the safetensors weights hold {info.weight_numel:,} parameters, the config's "
                        f"Qwen2.5-VL has {want:,} ({what} the config's: another model, or an incomplete download)")


def _tokenizer(info: ModelInfo, d: Path, problems: list[str]) -> None:
    if not ((d / "tokenizer.json").is_file() or (d / "vocab.json").is_file()):
        problems.append(f"{d}: no tokenizer (tokenizer.json or vocab.json + merges.txt)")
        return
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as e:  # any failure of the tokenizer files is this one line
        problems.append(f"{d}: the tokenizer does not load ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        return
    info.tokenizer_len = len(tok)
    cfg = info.config
    vocab = tok.get_vocab()
    wrong = []  # one line for all: a tokenizer of another model shifts every id at once
    for token, name in SPECIAL_TOKENS.items():
        want, got = getattr(cfg, name, None), vocab.get(token)
        if got is None:
            wrong.append(f"{token} missing (config {name} {want})")
        elif want is not None and int(got) != int(want):
            wrong.append(f"{token} {got} (config {name} {want})")
    eos = getattr(cfg.text_config, "eos_token_id", None)
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    if tok.eos_token_id is None:
        wrong.append("no eos token")
    elif eos and int(tok.eos_token_id) not in eos:
        want = sorted(eos)[0] if len(eos) == 1 else sorted(eos)
        wrong.append(f"eos {tok.eos_token!r} {tok.eos_token_id} (config eos_token_id {want})")
    if wrong:
        problems.append(f"{d}: the tokenizer's special-token ids are not the config's (a tokenizer of another "
                        f"model?): {'; '.join(wrong)}")


def _processor(info: ModelInfo, d: Path, problems: list[str]) -> None:
    found = [d / f for f in PROCESSOR_FILES if (d / f).is_file()]
    if not found:
        problems.append(f"{d}: no processor config ({' or '.join(PROCESSOR_FILES)})")
        return
    try:
        raw = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{found[0]}: unreadable ({type(e).__name__}: {e})")
        return
    vp = raw.get("video_processor") or raw.get("image_processor") or raw
    size = vp.get("size") or {}
    proc = {"patch_size": vp.get("patch_size"), "merge_size": vp.get("merge_size"),
            "temporal_patch_size": vp.get("temporal_patch_size"),
            "min_pixels": size.get("shortest_edge", vp.get("min_pixels")),
            "max_pixels": size.get("longest_edge", vp.get("max_pixels"))}
    vc = info.config.vision_config
    for k, field_ in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                      ("temporal_patch_size", "temporal_patch_size")):
        if proc[k] is None:
            problems.append(f"{found[0]}: no {k}")
        elif int(proc[k]) != int(getattr(vc, field_)):
            problems.append(f"{found[0]}: {k} {proc[k]}, the vision config's {field_} is {getattr(vc, field_)}")
    if proc["min_pixels"] is None or proc["max_pixels"] is None:
        problems.append(f"{found[0]}: no pixel range (size.shortest_edge / longest_edge)")
    info.processor = proc


def check_model(source: str) -> tuple[ModelInfo, list[str]]:
    """The model directory `backbone.path` names, checked without loading weights (see the module doc)."""
    info, problems = ModelInfo(str(source)), []
    d = model_dir(source)
    if d is None:
        problems.append(f"backbone {source}: not a local directory and not in the Hugging Face cache "
                        f"(download it first: huggingface-cli download {source})")
        return info, problems
    info.path = d
    cfg_path = d / "config.json"
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{cfg_path}: missing")
        return info, problems
    except (OSError, ValueError) as e:
        problems.append(f"{cfg_path}: unreadable ({type(e).__name__}: {e})")
        return info, problems
    if not isinstance(raw, dict) or raw.get("model_type") != "qwen2_5_vl":
        problems.append(f"{cfg_path}: model_type {raw.get('model_type') if isinstance(raw, dict) else None!r}, "
                        "not a Qwen2.5-VL checkpoint ('qwen2_5_vl')")
        return info, problems
    try:
        from transformers import Qwen2_5_VLConfig

        info.config = Qwen2_5_VLConfig.from_dict(raw)
        info.params = parameter_counts(info.config)
    except Exception as e:  # a config transformers cannot read: one line
        problems.append(f"{cfg_path}: not a valid Qwen2.5-VL config ({type(e).__name__}: {e})")
        return info, problems
    _weights(info, d, problems)
    _tokenizer(info, d, problems)
    _processor(info, d, problems)
    return info, problems


def too_short(reason: str) -> bool:
    """A clip-protocol skip that is expected (a video under the shortest clip), not a problem."""
    return reason.startswith("too short for a clip")


def check_data(data_cfg: Any, seed: int = 0) -> tuple[ClipIndex | None, list[str], list[str]]:
    """(the run's clip index or None, notes, problems): `build_index` on the configured trees with
    every bad item collected (strict=False); a missing tree or an unreadable item is a problem line,
    a video too short for a clip a note. A synthetic set not generated yet is a note (notebook 01
    generates it); nothing is generated here."""
    notes: list[str] = []
    if data_cfg.dataset == "synthetic" and not (resolve_path(data_cfg.root) / "scripts").is_dir():
        if data_cfg.generate:
            notes.append(f"{resolve_path(data_cfg.root)}: the synthetic set is not generated yet (notebook 01 writes "
                         "it); clip counts need it")
            return None, notes, []
        return None, notes, [f"{resolve_path(data_cfg.root)}: no synthetic dataset and data.generate is off"]
    cfg = dataclasses.replace(data_cfg, strict=False, generate=False)
    try:
        index = build_index(cfg, seed=seed)
    except (DataError, VideoError, OSError, ValueError) as e:
        msg = str(e.args[0]) if isinstance(e, (DataError, VideoError)) and e.args else str(e)
        return None, notes, [f"dataset {data_cfg.dataset}: {msg}"]
    notes += index.notes
    problems = []
    short = [s for s in index.skipped if too_short(s.reason)]
    if short:
        notes.append(f"{len(short)} source video(s) shorter than the shortest clip skipped (as notebook 01 does): "
                     + ", ".join(s.item or Path(s.path).name for s in short[:5]) + (" ..." if len(short) > 5 else ""))
    for s in index.skipped:
        if not too_short(s.reason):
            problems.append(f"{s.path}: {s.reason}" + (f" ({s.item})" if s.item and s.item not in s.path else ""))
    return index, notes, problems


