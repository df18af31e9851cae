"""The Anomaly Heatmap Decoder (AHD), eq. 4-7 of the paper, as METHOD.md settles them.

    ahd = AHD(layer_dims={0: 128, 1: 128}, text_dim=128, hidden=256)
    ahd.set_text(F_normal, F_abnormal)            # (K, D) each, from Backbone.text_features (eq. 2)
    out = ahd({0: F_0, 1: F_1})                   # F_l: (..., T, h, w, D_l) raster-order block features
    out.heat        # (..., T, h, w) H in [0, 1] (eq. 7)
    out.logits      # (..., T, h, w, 2) S / tau, classes [normal, abnormal]
    ahd.upsample(out.heat, (H, W))                # (..., T, H, W) bilinear, the pixel heatmap
    heat_to_frames(out.heat, (H, W), N)           # (N, H, W) per input frame (both frames of a pair)

Only the AHD is trained in stage 1; the class text features are frozen buffers (the text
encoder is part of the frozen backbone) saved with the weights.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from tvad.io import atomic_replace_dir, atomic_write_json

NORMAL, ABNORMAL = 0, 1  # class order c in {normal, abnormal}


CKPT_FORMAT = "tvad-ahd-1"  # ahd.json "format" of AHD checkpoint directories


class AHDError(ValueError):
    """Bad input to the AHD (missing layers, wrong widths, non-finite values)."""


@dataclass
class AHDOutput:
    logits: torch.Tensor  # (..., T, h, w, 2) S / tau (eq. 7's softmax input), [normal, abnormal]
    heat: torch.Tensor  # (..., T, h, w) H = softmax(S / tau)[..., abnormal] in [0, 1] (eq. 7)
    per_layer: dict[int, torch.Tensor]  # {l: (..., T, h, w, 2)} S_l, the cosine maps of eq. 5


class AHD(nn.Module):
    """MLP_l per chosen ViT block, cosine with the pooled class texts, convex layer mix, softmax."""

    def __init__(self, layer_dims: Mapping[int, int], text_dim: int, hidden: int = 256,
                 layer_weighting: str = "softmax", logit_scale: float = 100.0, learnable_scale: bool = False):
        super().__init__()
        if not layer_dims:
            raise AHDError("the AHD needs at least one ViT block")
        if layer_weighting not in ("softmax", "raw"):
            raise AHDError(f"layer_weighting must be 'softmax' or 'raw', got {layer_weighting!r}")
        self.layers = sorted(int(l) for l in layer_dims)
        self.layer_dims = {int(l): int(d) for l, d in layer_dims.items()}
        self.text_dim, self.hidden = int(text_dim), int(hidden)
        self.layer_weighting = layer_weighting
        # eq. 4: G_l = MLP_l(F_l), Linear D_l -> hidden, ReLU, Linear hidden -> D (authors' code)
        self.mlps = nn.ModuleDict({
            str(l): nn.Sequential(nn.Linear(self.layer_dims[l], hidden), nn.ReLU(), nn.Linear(hidden, text_dim))
            for l in self.layers})
        # eq. 6: a_l, softmax-normalised (a convex mix) or raw; equal weights at the start
        init = torch.zeros(len(self.layers)) if layer_weighting == "softmax" else torch.full(
            (len(self.layers),), 1.0 / len(self.layers))
        self.layer_weights = nn.Parameter(init)
        # eq. 7: 1/tau, fixed (authors: 100) or learnable (kept in log space, positive)
        log_scale = torch.tensor(float(logit_scale)).log()
        if learnable_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        # eq. 4: t_c = mean over K of F_c; frozen, set by set_text, saved with the weights
        self.register_buffer("text", torch.zeros(2, text_dim))

    # -- text side ----------------------------------------------------------------------------
    def set_text(self, normal: torch.Tensor, abnormal: torch.Tensor) -> None:
        """normal, abnormal: (K, D) text features of the K templates of each class (eq. 2)."""
        for name, f in (("normal", normal), ("abnormal", abnormal)):
            if f.ndim != 2 or f.shape[1] != self.text_dim:
                raise AHDError(f"{name} text features must be (K, {self.text_dim}), got {tuple(f.shape)}")
            if not torch.isfinite(f).all():
                raise AHDError(f"non-finite {name} text features")
        t = torch.stack([normal.float().mean(0), abnormal.float().mean(0)])  # eq. 4: t_c = mean_K F_c
        self.text.copy_(t.to(self.text.device))

    def text_separation(self) -> dict[str, float]:
        """How far apart the two class texts are, and what that allows the heatmap (eq. 5-7):
        {"text_cos": cos(t_normal, t_abnormal), "logit_gap_max": (1/tau) * ||t^_a - t^_n||, the
        largest abnormal-minus-normal logit any feature can reach (Cauchy-Schwarz on eq. 5-6 with
        convex a_l), "heat_min", "heat_max": sigmoid(-/+ that), the range every heat value H lies in
        however the MLPs are trained}. With nearly parallel texts the range shrinks towards 0.5."""
        t = F.normalize(self.text.float(), dim=-1)
        cos = float(t[0] @ t[1])
        gap = float(self.scale.detach().float()) * float((t[ABNORMAL] - t[NORMAL]).norm())
        if self.layer_weighting != "softmax":  # raw a_l: the bound scales with sum |a_l|
            gap *= float(self.mix_weights().detach().abs().sum())
        return {"text_cos": cos, "logit_gap_max": gap, "heat_min": float(torch.sigmoid(torch.tensor(-gap))),
                "heat_max": float(torch.sigmoid(torch.tensor(gap)))}

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def mix_weights(self) -> torch.Tensor:
        """(L,) the a_l of eq. 6."""
        return self.layer_weights.softmax(0) if self.layer_weighting == "softmax" else self.layer_weights

    # -- eq. 4-7 -----------------------------------------------------------------------------
    def forward(self, features: Mapping[int, torch.Tensor]) -> AHDOutput:
        """features: {l: (..., T, h, w, D_l)} for every chosen block l (raster order)."""
        missing = [l for l in self.layers if l not in features]
        if missing:
            raise AHDError(f"features for ViT block(s) {missing} missing (AHD trained on {self.layers}, "
                           f"got {sorted(features)})")
        if not self.text.abs().sum() > 0:
            raise AHDError("class text features not set: call set_text(normal, abnormal) first")
        t = F.normalize(self.text, dim=-1)  # (2, D)
        a = self.mix_weights()
        per_layer, s = {}, None
        for i, l in enumerate(self.layers):
            f = features[l]
            if f.shape[-1] != self.layer_dims[l]:
                raise AHDError(f"block {l} features have width {f.shape[-1]}, the AHD expects {self.layer_dims[l]}")
            g = self.mlps[str(l)](f.to(self.text.dtype))  # eq. 4: G_l = MLP_l(F_l), (..., T, h, w, D)
            s_l = F.normalize(g, dim=-1) @ t.T  # eq. 5: S_l(t,i,j,c) = cos(G_l(t,i,j), t_c), (..., 2)
            per_layer[l] = s_l
            s = a[i] * s_l if s is None else s + a[i] * s_l  # eq. 6: S = sum_l a_l S_l
        logits = self.scale * s  # eq. 7: S / tau
        heat = logits.softmax(-1)[..., ABNORMAL]  # eq. 7: H = softmax over c, abnormal channel
        return AHDOutput(logits=logits, heat=heat, per_layer=per_layer)

    # -- pixel output --------------------------------------------------------------------------
    @staticmethod
    def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear resize of (..., T, h, w) maps to (..., T, H, W) (align_corners=False)."""
        lead = x.shape[:-2]
        y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]).float(), size=tuple(int(v) for v in size),
                          mode="bilinear", align_corners=False)
        return y.reshape(*lead, *y.shape[-2:])

    def pixel_logit(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(..., T, h, w, 2) -> (..., T, H, W) the abnormal-vs-normal logit, bilinearly upsampled.

        sigmoid(logit) = softmax over c of the upsampled 2-class scores; the training loss uses it
        (stable cross-entropy with logits); `upsample(heat)` is the inference output (eq. 7)."""
        d = logits[..., ABNORMAL] - logits[..., NORMAL]
        return self.upsample(d, size)

    def config_dict(self) -> dict:
        return {"layer_dims": {str(k): v for k, v in self.layer_dims.items()}, "text_dim": self.text_dim,
                "hidden": self.hidden, "layer_weighting": self.layer_weighting,
                "logit_scale": float(self.scale.detach()), "learnable_scale": isinstance(self.log_scale, nn.Parameter)}

    @classmethod
    def from_config_dict(cls, d: dict) -> "AHD":
        return cls({int(k): int(v) for k, v in d["layer_dims"].items()}, d["text_dim"], d["hidden"],
                   d["layer_weighting"], d["logit_scale"], d["learnable_scale"])


def heat_to_frames(heat: torch.Tensor, size: tuple[int, int], num_frames: int) -> torch.Tensor:
    """(T', h, w) maps on the temporal-patch grid -> (num_frames, H, W) frame maps (float32): each map
    bilinearly upsampled to `size` (`AHD.upsample`) and shared by both frames of its pair; a padded
    last pair (odd frame count) is cut off at `num_frames`."""
    return AHD.upsample(heat, size).repeat_interleave(2, 0)[:num_frames]


def pair_merge(masks: torch.Tensor) -> torch.Tensor:
    """(..., N, H, W) per-frame masks -> (..., ceil(N/2), H, W) bool: frames 2t and 2t+1 OR-ed
    (the paper's pairwise merging to the temporal patch). An odd N repeats the last frame."""
    m = masks != 0
    if m.shape[-3] % 2:
        m = torch.cat([m, m[..., -1:, :, :]], dim=-3)
    return m[..., 0::2, :, :] | m[..., 1::2, :, :]


def frame_scores(heat: torch.Tensor, mode: str = "max", topk: int = 16) -> torch.Tensor:
    """(..., T, H, W) heat -> (..., T) frame scores: the max over the frame, or the top-k mean."""
    flat = heat.flatten(-2)
    if mode == "max":
        return flat.amax(-1)
    if mode == "topk":
        return flat.topk(min(int(topk), flat.shape[-1]), dim=-1).values.mean(-1)
    raise AHDError(f"unknown frame_score {mode!r}; use 'max' or 'topk'")


def ahd_loss(ahd: AHD, out: AHDOutput, masks: torch.Tensor, pos_weight: float = 1.0, dice_weight: float = 0.0,
             frame_ce: bool = False) -> torch.Tensor:
    """Pixel cross-entropy of the 2-class map against pair-merged masks (+ optional Dice, frame CE).

    out.logits: (..., T, h, w, 2); masks: (..., T, H, W) bool, already pair-merged.
    """
    if masks.shape[-3] != out.logits.shape[-4]:
        raise AHDError(f"{masks.shape[-3]} pair-merged mask frames for {out.logits.shape[-4]} temporal tokens")
    d = ahd.pixel_logit(out.logits, masks.shape[-2:])  # (..., T, H, W)
    y = masks.to(d.dtype)
    pw = torch.tensor(float(pos_weight), dtype=d.dtype, device=d.device)
    loss = F.binary_cross_entropy_with_logits(d, y, pos_weight=pw)  # 2-class pixel CE
    if dice_weight > 0:
        p = d.sigmoid().flatten(-2)
        yy = y.flatten(-2)
        inter = (p * yy).sum(-1)
        dice = 1 - (2 * inter + 1) / (p.sum(-1) + yy.sum(-1) + 1)
        loss = loss + dice_weight * dice.mean()
    if frame_ce:  # optional frame-level CE on the max pixel logit (off by default, as in the paper)
        loss = loss + F.binary_cross_entropy_with_logits(d.flatten(-2).amax(-1), y.flatten(-2).amax(-1))
    if not torch.isfinite(loss):
        raise AHDError("non-finite AHD loss (NaN/inf in features or heatmaps)")
    return loss


# -- checkpoints ----------------------------------------------------------------------------------

class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, non-finite or of other settings."""


def read_checkpoint_json(path: Path, name: str, fmt: str, what: str) -> dict:
    """The JSON file `name` of a checkpoint directory, checked to carry format `fmt` (also read by
    the full model's `tvad.model.checkpoint`); `what` names the kind in errors ("an AHD")."""
    if not (path / name).exists():
        raise FileNotFoundError(f"{path}: not {what} checkpoint (no {name})")
    try:
        meta = json.loads((path / name).read_text())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path / name}: corrupt checkpoint file (not JSON: {e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / name}: corrupt checkpoint file (not a JSON object)")
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return meta


def read_safetensors(path: str | os.PathLike, finite: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's safetensors file; a truncated or garbled file, or (with `finite`)
    one holding NaN/inf values, is a `CheckpointError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    try:
        tensors = load_file(str(p))
    except Exception as e:  # SafetensorError, OSError, ...: the header or the data do not parse
        raise CheckpointError(f"{p}: corrupt safetensors file (truncated or garbled: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if finite:
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{p}: non-finite weights (NaN/inf) in {', '.join(sorted(bad)[:3])}"
                                  f"{' ...' if len(bad) > 3 else ''}")
    return tensors


def load_weights(module: nn.Module, tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 settings: str = "") -> None:
    """`module.load_state_dict(tensors)`; missing, unexpected or differently shaped tensors are a
    `CheckpointError` naming the weights file (and `settings`, the file that fixes the shapes)."""
    want = module.state_dict()
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    shapes = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in want.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    where = f" (settings from {settings})" if settings else ""
    if shapes:
        raise CheckpointError(f"{path}: weights do not fit the configured model{where}: {shapes[0]}"
                              f"{f' and {len(shapes) - 1} more' if len(shapes) > 1 else ''}")
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not fit the configured model{where}: "
                              f"missing {missing[:3]}, unexpected {extra[:3]}")
    module.load_state_dict(dict(tensors))


def save_ahd(ahd: AHD, path: str | os.PathLike, meta: dict,
             extra: Callable[[Path], None] | None = None) -> Path:
    """A self-contained AHD checkpoint directory (atomic: written aside, then renamed). `extra(folder)`
    writes more files into the new folder before it is swapped in (stage 1's training state)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in ahd.state_dict().items()}, str(tmp / "ahd.safetensors"))
    atomic_write_json(tmp / "ahd.json", {"format": CKPT_FORMAT, "ahd": ahd.config_dict(), **meta})
    if extra is not None:
        extra(tmp)
    return atomic_replace_dir(tmp, p)


def load_ahd(path: str | os.PathLike, backbone_identity: str | None = None,
             layers: Sequence[int] | None = None) -> tuple[AHD, dict]:
    """(AHD, meta) from a checkpoint directory; a checkpoint made on another backbone or layer set
    than the one given is a clear error, and so is a corrupt, non-finite or mismatched weights file."""
    p = Path(path)
    meta = read_checkpoint_json(p, "ahd.json", CKPT_FORMAT, "an AHD")
    bb = meta.get("backbone", {})
    if backbone_identity is not None and bb.get("identity") != backbone_identity:
        raise ValueError(f"{p}: checkpoint was trained on backbone {bb.get('identity')} ({bb.get('path')}), "
                         f"not on the loaded backbone {backbone_identity}")
    if isinstance(layers, str):  # e.g. "auto": the caller must resolve it on its backbone first
        raise ValueError(f"{p}: load_ahd needs the resolved list of ViT blocks, got {layers!r} "
                         f"(pass Backbone.resolve_layers({layers!r}))")
    if layers is not None and sorted(int(l) for l in layers) != sorted(bb.get("layers", [])):
        raise ValueError(f"{p}: checkpoint uses ViT blocks {bb.get('layers')}, not {sorted(layers)}")
    try:
        ahd = AHD.from_config_dict(meta["ahd"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{p / 'ahd.json'}: bad 'ahd' settings ({type(e).__name__}: {e})") from None
    load_weights(ahd, read_safetensors(p / "ahd.safetensors"), p / "ahd.safetensors", p / "ahd.json")
    return ahd, meta
