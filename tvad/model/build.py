"""Building models from a configuration: a fresh AHD for stage 1, a full T-VAD for stage 2.

    ahd = build_ahd(backbone, cfg.ahd, backbone.resolve_layers(cfg.backbone.layers), cfg.data.dataset,
                    cfg.backbone.text_encoder, seed=0)
    model = build_model(cfg, run_dir / "stage1" / "best", use_rae=True, meta={"fps": 1.0})

Restoring a trained model is `tvad.model.load` (`checkpoint.py`); the backbone alone is
`backbone.from_pretrained` / `from_config`; a stage-1 detector is `detector.load_detector`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from tvad.model.ahd import AHD, load_ahd
from tvad.model.backbone import from_config
from tvad.model.tvad import TVAD
from tvad.prompts import class_prompts


def build_ahd(backbone, ahd_cfg, layers: Sequence[int] | str, dataset: str = "synthetic",
              text_encoder: str = "embeddings", seed: int = 0) -> AHD:
    """An AHD for `backbone`'s chosen blocks (`layers`: a list, or "auto", `Backbone.resolve_layers`) with
    the class text features of `dataset`'s prompts."""
    torch.manual_seed(seed)
    ahd = AHD(backbone.layer_dims(layers), ahd_cfg.text_dim or backbone.text_dim, ahd_cfg.hidden,
              ahd_cfg.layer_weighting, ahd_cfg.logit_scale, ahd_cfg.learnable_scale)
    if ahd.text_dim != backbone.text_dim:
        raise ValueError(f"ahd.text_dim {ahd.text_dim} != the backbone's text width {backbone.text_dim}")
    abnormal, normal = class_prompts(dataset, k=ahd_cfg.num_templates)
    ahd.set_text(backbone.text_features(normal, text_encoder), backbone.text_features(abnormal, text_encoder))
    return ahd.to(backbone.device)


def build_model(cfg, ahd_dir: Path, use_rae: bool, meta: dict) -> TVAD:
    """A fresh stage-2 model: the configured backbone, the stage-1 AHD checkpoint at `ahd_dir`
    (checked against that backbone and `cfg.backbone.layers` as it resolves on it), and a new RAE (`cfg.rae`, seeded
    with `cfg.stage2.seed`) when `use_rae`; `meta` gains `stage2.video_max_tokens`."""
    bb = from_config(cfg.backbone)
    ahd, ahd_meta = load_ahd(ahd_dir, backbone_identity=bb.identity, layers=bb.resolve_layers(cfg.backbone.layers))
    meta = {"video_max_tokens": cfg.stage2.video_max_tokens, **meta}
    return TVAD.build(bb, ahd, ahd_meta, cfg.rae, use_rae=use_rae, seed=int(cfg.stage2.seed), meta=meta)
