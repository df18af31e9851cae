"""Shared by the stage-2 tests (test_train_clips/collate/stage2, test_evaluate_dialogues): a tiny
corpus of 4 + 2 dialogues over random 4-frame clips (even ones with a bright moving square, the
"anomaly"), a tiny T-VAD on it, and the clip store of those arrays."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from tvad.config import AHDConfig, RAEConfig, Stage2Config
from tvad.corpus import validate_record
from tvad.data.record import Video
from tvad.model.build import build_ahd
from tvad.model.tiny import build_tiny
from tvad.model.tvad import TVAD
from tvad.train.clips import ClipResolver, ClipStore

LAYERS = [0, 3]


def _records(n: int, split: str = "train", phase: str = "b") -> tuple[list[dict], dict]:
    rng = np.random.default_rng({"train": 0, "val": 1}[split])
    arrays, recs = {}, []
    for i in range(n):
        name = f"{split}{i}"
        f = rng.integers(0, 60, (4, 112, 112, 3), dtype=np.uint8)
        ab = i % 2 == 0
        if ab:  # a bright moving square: the "anomaly"
            for t in range(4):
                f[t, 30:60, 10 + 20 * t:40 + 20 * t] = 250
        arrays[name] = f
        msgs = [{"role": "system", "content": "You watch a fixed camera."},
                {"role": "user", "content": "Is there any anomaly in this video?"},
                {"role": "assistant", "content": "Yes." if ab else "No."},
                {"role": "user", "content": "How does it move?"},
                {"role": "assistant",
                 "content": "It moves right quickly." if ab else "Nothing moves in this scene at all."}]
        r = {"schema": "tvad.corpus/v1", "id": f"{phase}/{split}/{name}", "phase": phase, "split": split,
             "clip": {"name": name, "source_video": name, "frame_indices": [0, 1, 2, 3], "num_frames": 4,
                      "fps": 8.0, "size": [112, 112], "label": int(ab), "path": ""},
             "messages": msgs,
             "turns": [{"type": "yes_no", "kind": "judgement", "references": [msgs[2]["content"]],
                        "truth": "yes" if ab else "no"},
                       {"type": "trajectory", "kind": "trajectory", "references": [msgs[4]["content"]]}],
             "targets": [], "annotator": "oracle"}
        assert validate_record(r) == [], validate_record(r)
        recs.append(r)
    return recs, arrays


TRAIN, ARR_T = _records(4, "train")


VAL, ARR_V = _records(2, "val")


ARRAYS = {**ARR_T, **ARR_V}


CFG = Stage2Config(lr=2e-3, grad_accum=1, epochs=1.0, eval_steps=2, max_length=512, phase_b_last_layers=1)


def _model(use_rae: bool = True, video_max_tokens: int | None = None) -> TVAD:
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    ahd = build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0)
    return TVAD.build(bb, ahd, {"backbone": {"layers": LAYERS, "identity": bb.identity}}, RAEConfig(channels=8),
                      use_rae=use_rae, seed=0, meta={"fps": 8.0, "video_max_tokens": video_max_tokens})


def _store(model, root=None):
    return ClipStore(model, ClipResolver(arrays=ARRAYS), root)


def _sd(m: TVAD) -> dict:
    return {k: v.detach().clone() for k, v in m.qwen.state_dict().items() if "anomaly_injector" not in k}


def _changed(a: dict, b: dict, m: TVAD) -> set:
    """Keys whose weights differ, the embedding / tied head counted only outside the prompt-token rows."""
    out = set()
    prompt = sorted(m.token_ids.values())
    for k in a:
        if torch.equal(a[k], b[k]):
            continue
        if k.endswith("embed_tokens.weight") or k == "lm_head.weight":
            keep = torch.ones(a[k].shape[0], dtype=torch.bool)
            keep[prompt] = False
            if torch.equal(a[k][keep], b[k][keep]):
                continue
        out.add(k)
    return out


class _MaskedVideo(Video):
    """A video record held in arrays: frames (T, H, W, 3) and object-id maps (T, H, W); object 1 is
    anomalous over the whole clip, every other id normal."""

    def __init__(self, name, frames, maps, has_masks=True):
        super().__init__(name, f"/no/such/{name}.mp4", len(frames), 8.0, frames.shape[1:3], split="train",
                         anomaly_rows=np.array([[1, 0, len(frames) - 1]]), has_masks=has_masks)
        self._frames, self._maps = frames, maps

    def read_frames(self, indices=None):
        return self._frames[self._indices(indices)]

    def _read_id_maps(self, idx):
        return self._maps[idx]
