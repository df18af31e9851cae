"""Full-model checkpoints: `save_model` writes one, `read_checkpoint` restores it, and `load` is the one
public loader (`tvad.load`, `tvad.model.load`): a checkpoint directory, or a run directory.

    save_model(model, "runs/cpu/stage2/rae/phase_b/final", {"phase": "b"})
    model = load("runs/cpu")              # its stage-2 model if trained, else its stage-1 AHD (no prompts)
    model = load("runs/cpu/stage2/rae/phase_b/final", device="cpu")   # a checkpoint directory

A checkpoint directory (written aside and renamed into place): backbone/ (the processor and the
tokenizer carrying the prompt tokens, the config and, stored "full", the merged Qwen model in
safetensors), delta.safetensors (stored "delta", the default: only the tensors stage 2 changed against
the base backbone, which tvad.json references by path and sha256; `tvad.model.delta`), rae.safetensors
(the RAE and the three token rows), ahd/ (the AHD checkpoint, `tvad.model.ahd.save_ahd`) and tvad.json
(switches, tokens, meta, the RAE's settings, how the backbone is stored, a fingerprint of the vision
tower's weights).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from tvad.io import atomic_replace_dir, atomic_write_json
from tvad.model.ahd import CheckpointError, load_ahd, load_weights, read_checkpoint_json, read_safetensors, save_ahd
from tvad.model.backbone import from_pretrained, vision_hash
from tvad.model.delta import DELTA_FILE, delta_base, load_delta, save_delta
from tvad.model.detector import find_checkpoint, load_detector
from tvad.model.rae import new_rae, rae_kwargs
from tvad.model.tvad import INJECTOR_NAME, TVAD

CKPT_FORMAT = "tvad-model-1"  # tvad.json "format" of full-model checkpoint directories
STORAGES = ("delta", "full")  # how save_model stores the backbone (`stage2.checkpoints`)


def save_model(model: TVAD, path: str | os.PathLike, meta: dict | None = None, storage: str = "delta") -> Path:
    """A checkpoint directory of `model` (atomic): backbone/ (the processor and the tokenizer carrying
    the prompt tokens), rae.safetensors, ahd/ (the AHD checkpoint), tvad.json (switches, tokens, meta,
    resolved config, "backbone_storage": how the backbone is stored). `storage` "delta": only the
    tensors that differ from the base backbone the model was loaded from (delta.safetensors, the base
    referenced by path and sha256; a backbone built in memory or from a hub id has no base on disk and is
    stored "full", tvad.json saying why); "full": the whole merged model in backbone/ (self-contained)."""
    if storage not in STORAGES:
        raise ValueError(f"checkpoint storage must be one of {STORAGES}, got {storage!r}")
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.merge_prompt_rows()
    inner = model.qwen.model
    inj = inner._modules.pop(INJECTOR_NAME)
    base = delta_base(model.backbone) if storage == "delta" else None
    try:
        if base is not None:
            stored = save_delta(model.qwen, base, tmp, processor=model.backbone.processor)
        else:
            model.backbone.save_pretrained(tmp / "backbone")
            stored = {"storage": "full"}
            if storage == "delta":
                stored["why"] = "the backbone was not read from a local folder of safetensors weights"
    finally:
        inner._modules[INJECTOR_NAME] = inj
    tensors = {"token_rows": model.injector.token_rows.detach().float().cpu().contiguous()}
    if model.rae is not None:
        tensors.update({f"rae.{k}": v.detach().cpu().contiguous() for k, v in model.rae.state_dict().items()})
    save_file(tensors, str(tmp / "rae.safetensors"))
    if model.ahd is not None:
        save_ahd(model.ahd, tmp / "ahd", {k: v for k, v in model.ahd_meta.items() if k not in ("format", "ahd")})
    m = {**model.meta, **(meta or {})}
    m.update({"format": CKPT_FORMAT, "tokens": model.token_ids, "use_rae": model.use_rae, "use_ahd": model.use_ahd,
              "has_rae": model.rae is not None, "has_ahd": model.ahd is not None, "layers": model.layers,
              "fps": model.fps, "max_frames": model.max_frames, "system_prompt": model.system_prompt,
              "num_prompts": model.injector.num_prompts, "vision_hash": vision_hash(model.qwen),
              "dtype": str(model.backbone.dtype).replace("torch.", ""), "max_pixels": model.backbone.max_pixels,
              "video_max_tokens": model.video_max_tokens, "backbone_storage": stored,
              "rae": rae_kwargs(model.rae) if model.rae is not None else None})
    atomic_write_json(tmp / "tvad.json", m)
    return atomic_replace_dir(tmp, p)


def find_model(path: str | os.PathLike) -> Path | None:
    """A full-model checkpoint (tvad.json) at `path` or, in a run dir, the stage-2 result."""
    p = Path(path)
    if (p / "tvad.json").exists():
        return p
    for cand in (p / "stage2" / "rae" / "phase_b" / "final", p / "stage2" / "rae" / "phase_a" / "final",
                 p / "stage2" / "final"):
        if (cand / "tvad.json").exists():
            return cand
    return None


def read_checkpoint(path: str | os.PathLike, device: str | None = None, dtype: str | None = None) -> TVAD:
    """Restore a checkpoint directory written by `save_model` (identical logits)."""
    p = Path(path)
    meta = read_checkpoint_json(p, "tvad.json", CKPT_FORMAT, "a T-VAD")
    stored = meta.get("backbone_storage") if isinstance(meta.get("backbone_storage"), dict) else {"storage": "full"}
    delta = stored.get("storage") == "delta"
    parts = {"backbone": p / "backbone" / "config.json", "RAE weights": p / "rae.safetensors"}
    if delta:
        parts["backbone delta"] = p / DELTA_FILE
    if meta.get("has_ahd", True):
        parts["AHD"] = p / "ahd" / "ahd.json"
    for name, f in parts.items():
        if not f.exists():
            raise FileNotFoundError(f"{p}: the checkpoint is missing its {name} ({f.relative_to(p)})")
    try:
        if delta:  # the base (checked by path and sha256) + delta.safetensors
            bb = load_delta(p, stored, dtype=dtype or meta.get("dtype", "float32"), device=device or "auto",
                            max_pixels=meta.get("max_pixels"))
        else:
            bb = from_pretrained(p / "backbone", dtype=dtype or meta.get("dtype", "float32"),
                                 device=device or "auto", max_pixels=meta.get("max_pixels"))
    except CheckpointError:
        raise
    except Exception:
        _check_safetensors_files(p / "backbone")  # a truncated / garbled weights file: name it
        raise
    got = vision_hash(bb.model)
    if meta.get("vision_hash") and got != meta["vision_hash"]:
        raise ValueError(f"{p}: the vision tower's weights differ from the ones saved ({got} != {meta['vision_hash']})")
    for t, i in (meta.get("tokens") or {}).items():
        if bb.tokenizer.convert_tokens_to_ids(t) != int(i):
            raise ValueError(f"{p}: tokenizer maps {t} to {bb.tokenizer.convert_tokens_to_ids(t)}, checkpoint says {i}")
    ahd, ahd_meta = (load_ahd(p / "ahd") if meta.get("has_ahd", True) else (None, {}))
    st = read_safetensors(p / "rae.safetensors")  # corrupt or non-finite: a CheckpointError naming the file
    rae = None
    if meta.get("has_rae"):
        if not any(k.startswith("rae.") for k in st):
            raise FileNotFoundError(f"{p}: rae.safetensors holds no RAE weights")
        try:
            rae = new_rae(bb.model.config.text_config.hidden_size, meta["rae"])  # unseeded: weights restored next
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{p / 'tvad.json'}: bad 'rae' settings {meta.get('rae')!r} "
                                  f"({type(e).__name__}: {e})") from None
        try:
            load_weights(rae, {k[4:]: v for k, v in st.items() if k.startswith("rae.")}, p / "rae.safetensors")
        except CheckpointError as e:
            raise CheckpointError(f"{e.args[0]}; tvad.json's 'rae' settings {meta['rae']} "
                                  f"({p / 'tvad.json'}) do not match rae.safetensors") from None
    model = TVAD(bb, ahd, ahd_meta, rae, use_ahd=meta.get("use_ahd", True), use_rae=meta.get("use_rae", True),
                 meta=meta)
    rows = model.injector.token_rows
    if "token_rows" not in st or tuple(st["token_rows"].shape) != tuple(rows.shape):
        raise CheckpointError(f"{p / 'rae.safetensors'}: token_rows "
                              f"{tuple(st['token_rows'].shape) if 'token_rows' in st else 'missing'}, the model "
                              f"has {tuple(rows.shape)} (tvad.json 'num_prompts' / 'tokens' do not match)")
    with torch.no_grad():
        rows.copy_(st["token_rows"].to(rows.device))
    model.injector.to(bb.device)
    return model


def _check_safetensors_files(folder: Path) -> None:
    """A `CheckpointError` naming the first *.safetensors file under `folder` that does not read
    (called when loading the folder failed, to say which file is corrupt)."""
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    st.get_slice(k)[:1]  # headers and offsets; the data of a cut file is out of range
        except Exception as e:
            raise CheckpointError(f"{f}: corrupt safetensors file (truncated or garbled: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def load(path: str | os.PathLike, device: str | None = None, dtype: str | None = None, **kw) -> TVAD:
    """`tvad.load(path)`: a full-model checkpoint directory, or a run directory (its stage-2 model if
    trained, else its stage-1 AHD on the untrained backbone, chatting without prompts). `.detect`
    and `.chat` work on what it returns. `kw` (`backbone`, `window`) go to `load_detector` for a run
    directory without a stage-2 model."""
    found = find_model(path)
    if found is not None:
        return read_checkpoint(found, device=device, dtype=dtype)
    ck = find_checkpoint(path)  # a folder holding several candidates is an error listing them
    run = Path(path)
    if ck != run and ck.parent.name == "stage1":  # the one run found below a parent folder: load it as given
        run = ck.parent.parent
        found = find_model(run)
        if found is not None:
            return read_checkpoint(found, device=device, dtype=dtype)
    det = load_detector(ck, device=device, dtype=dtype, **kw)
    return TVAD(det.backbone, det.ahd, det.meta, rae=None, use_rae=False, use_ahd=True,
                meta={"stage2": None, "fps": None, "video_max_tokens": _run_video_max_tokens(run)}, window=det.window)


def _run_video_max_tokens(path: str | os.PathLike) -> int | None:
    """`stage2.video_max_tokens` of the run directory at `path` (its config.yaml), None if there is none."""
    f = Path(path) / "config.yaml"
    if not f.is_file():
        return None
    cfg = yaml.safe_load(f.read_text()) or {}
    return (cfg.get("stage2") or {}).get("video_max_tokens")
