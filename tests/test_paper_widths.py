"""The `paper` preset's settings at the 7B's widths: a random Qwen2.5-VL from
`qwen25vl_7b_config()` with the decoder cut to 2 layers (bf16, ~2.2 B parameters, ~4.5 GB; the real
Qwen2.5 tokenizer and the 7B's processor, `tvad.model.widths`) through stage 1 (the AHD on
layers "auto" = [0, 7, 15, 23, 31]), stage 2 phases A and B with `video_input = "pixels"`, the
merges, a reload of the merged checkpoint, the dialogue evaluation as notebook 04 builds it and
a generated answer. Small where the paper's values only cost time (tiny clips, one epoch,
short answers); the paper's where they choose a code path (pixels, layers auto, bf16 weights,
gradient checkpointing, LoRA phases, the video token budget).

The library functions the notebooks' steps call are called directly on the stage-2 fixture
dialogues (tests/stage2_fixtures.py): the steps' dataset / corpus machinery is covered by the
paper rehearsal (tests/test_paper_rehearsal.py) on the tiny backbone, and would cost minutes here.
Peak memory: one wide backbone at a time (~4.5 GB of weights; the chain's peak is printed).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gc
import math
import resource
import time

import numpy as np
import pytest
import torch
from stage2_fixtures import ARRAYS as ARRAYS_112
from stage2_fixtures import TRAIN as TRAIN_ALL
from stage2_fixtures import VAL as VAL_ALL
from stage2_fixtures import _MaskedVideo

from tvad.config import preset
from tvad.evaluate.dialogues import evaluate_model, judgement_scores
from tvad.model import load
from tvad.model.backbone import from_config
from tvad.model.build import build_ahd, build_model
from tvad.train.clips import ClipResolver, ClipStore, HeatmapView
from tvad.train.features import FeatureCache
from tvad.train.stage1 import backbone_meta, prepare
from tvad.train.stage1 import train as train_stage1
from tvad.train.stage2 import train_phase

pytestmark = pytest.mark.timeout(1500)

PAPER_LAYERS = [0, 7, 15, 23, 31]  # "auto" on the 7B's vision tower: the first block and the full-attention ones
SIDE = 56  # clip frames of 56 x 56 = 3,136 pixels: the 7B processor's min_pixels, 2 x 2 merged tokens per pair


def _small(recs):
    """The stage-2 fixture dialogues on 56 x 56 clips (the wide ViT's cost is per patch)."""
    return [{**r, "clip": {**r["clip"], "size": [SIDE, SIDE]}} for r in recs]


TRAIN, VAL = _small(TRAIN_ALL[:2]), _small(VAL_ALL[:1])  # one abnormal and one normal clip to train on
ARRAYS = {n: a[:, ::112 // SIDE, ::112 // SIDE].copy() for n, a in ARRAYS_112.items()}


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB (Linux)


@pytest.fixture(scope="module")
def wide(wide_checkpoint):
    """The wide checkpoint (the session's `wide_checkpoint`, written once) and the paper preset pointed at it."""
    t0 = time.time()
    ckpt = wide_checkpoint
    written_s = time.time() - t0
    cfg = preset("paper", {
        "backbone.path": str(ckpt), "backbone.device": "cpu",
        "backbone.max_pixels": SIDE * SIDE,  # the clips' size: 4 x 4 patches per frame pair
        "stage1.epochs": 1, "stage1.clip_frames": 4,
        "stage2.grad_accum": 1, "stage2.eval_steps": 2, "stage2.max_length": 512,
        "stage2.eval_max_new_tokens": 6, "stage2.lr": 1e-3,
    })
    s2 = cfg.stage2
    assert (s2.video_input, s2.bf16, s2.gradient_checkpointing, s2.video_max_tokens) == ("pixels", True, True, 1280)
    assert cfg.backbone.layers == "auto" and cfg.backbone.dtype == "bfloat16"
    return {"ckpt": ckpt, "cfg": cfg, "written_s": written_s}


def test_the_paper_chain_at_the_7b_widths(wide, tmp_path):
    cfg, t_all = wide["cfg"], time.time()
    times = {"write": wide["written_s"]}

    # -- stage 1: the AHD on the 7B's blocks "auto", features of the wide ViT -------------------------
    t = time.time()
    bb = from_config(cfg.backbone)
    assert bb.model.dtype == torch.bfloat16 and bb.text_dim == 3584
    assert len(bb.tokenizer) == 151665 and bb.tokenizer.convert_tokens_to_ids("<|video_pad|>") == 151656
    layers = bb.resolve_layers(cfg.backbone.layers)
    assert layers == PAPER_LAYERS
    maps = {n: np.zeros(a.shape[:3], np.int32) for n, a in ARRAYS.items()}
    for n, m in maps.items():  # the bright square of the even clips is object 1 (anomalous)
        m[...] = (ARRAYS[n].max(-1) >= 250).astype(np.int32)
    vids = {s: [_MaskedVideo(r["clip"]["name"], ARRAYS[r["clip"]["name"]], maps[r["clip"]["name"]]) for r in rs]
            for s, rs in (("train", TRAIN), ("val", VAL))}
    cache = FeatureCache(tmp_path / "features", bb, cfg.backbone.layers)
    samples = {s: prepare(v, cache, progress=False) for s, v in vids.items()}
    f = samples["train"][0].features
    for b in PAPER_LAYERS:
        assert tuple(f[b].shape) == (2, 4, 4, 1280), (b, tuple(f[b].shape))  # (T/2, h, w, D_v) of the 7B's ViT
        assert torch.isfinite(f[b].float()).all()
    ahd = build_ahd(bb, cfg.ahd, layers, cfg.data.dataset, cfg.backbone.text_encoder, seed=cfg.stage1.seed)
    res1 = train_stage1(ahd, samples["train"], samples["val"], cfg.stage1, tmp_path / "stage1", eval_cfg=cfg.eval,
                        meta=backbone_meta(bb, cfg), frame_score=cfg.ahd.frame_score, topk=cfg.ahd.topk,
                        progress=False)
    assert (res1.best_dir / "ahd.json").exists()
    del bb, cache, samples, ahd, f
    gc.collect()
    times["stage1"] = time.time() - t
    print(f"\n[widths] checkpoint {times['write']:.0f}s, stage 1 {times['stage1']:.0f}s", flush=True)

    # -- stage 2: phases A and B with pixels (the ViT runs every step), LoRA merged after each ---------
    t = time.time()
    meta = {"fps": 8.0, "system_prompt": TRAIN[0]["messages"][0]["content"], "config": cfg.to_dict()}
    model = build_model(cfg, res1.best_dir, use_rae=True, meta=meta)
    assert model.video_max_tokens == 1280 and model.qwen.dtype == torch.bfloat16
    resolver = ClipResolver(arrays=ARRAYS)
    # as notebook 03 builds it (tvad.steps.sft): no tokens, pixel values
    clips = ClipStore(model, resolver, tmp_path / "clips", video_embeds=cfg.stage2.video_input == "embeds",
                      pixels=cfg.stage2.video_input == "pixels")
    c = clips.get(TRAIN[0]["clip"])
    assert c.video_embeds is None and c.pixel_values is not None
    assert tuple(c.grid_thw.tolist()[0]) == (2, 4, 4) and c.pixel_values.shape == (32, 3 * 2 * 14 * 14)
    enc = model.encode(TRAIN[0]["messages"], c)
    ids = enc.input_ids.tolist()
    assert ids.count(151656) == 8 and ids.count(151652) == 1  # 2 x 2 x 2 merged video tokens, real ids
    assert min(model.token_ids.values()) >= 151665  # the prompt tokens come after Qwen's own
    finals = {}
    for ph in ("a", "b"):
        q = model.qwen.model.language_model.layers[-1].self_attn.q_proj.weight.detach().clone()
        r = train_phase(model, ph, TRAIN, VAL, clips, cfg.stage2, tmp_path / f"phase_{ph}", resume=False,
                        progress=False, meta={"variant": "full"}, log=lambda s: None)
        losses = [h["loss"] for h in r.history if "loss" in h]
        evals = [h["eval_loss"] for h in r.history if "eval_loss" in h]
        assert r.steps == len(TRAIN) and len(losses) == r.steps, r.history
        assert all(math.isfinite(x) for x in losses + evals) and evals, r.history
        assert len(set(losses)) > 1, losses  # the loss moves
        after = model.qwen.model.language_model.layers[-1].self_attn.q_proj.weight
        assert not torch.equal(after, q)  # the LoRA was merged into the last layer (both phases train it)
        finals[ph] = r.final_dir
        times[f"phase_{ph}"] = r.seconds
        print(f"[widths] phase {ph}: {r.seconds:.0f}s training, {time.time() - t:.0f}s since stage 2 began; "
              f"losses {losses}, eval {evals}", flush=True)
    assert model.meta["lora"]["phases"] == [None, [0, 1]]  # phase B: the last 4 layers of 2 = both
    clip = clips.get(VAL[0]["clip"])
    with torch.no_grad():
        ref = model.forward(VAL[0]["messages"], clip).loss.float()
    qb = model.qwen.model.language_model.layers[0].self_attn.v_proj.weight.detach().clone()
    del model, clips, c
    gc.collect()
    times["stage2"] = time.time() - t

    # -- reload the merged model, then notebook 04's dialogue evaluation and a generated answer -------
    t = time.time()
    m = load(finals["b"])
    assert m.qwen.dtype == torch.bfloat16 and m.layers == PAPER_LAYERS
    assert torch.equal(m.qwen.model.language_model.layers[0].self_attn.v_proj.weight, qb)
    # as notebook 04 builds it (tvad.evaluate.predict.predict_dialogues)
    store = ClipStore(m, resolver, tmp_path / "clips", video_embeds=cfg.stage2.video_input == "embeds",
                      pixels=cfg.stage2.video_input == "pixels")
    served = []
    get = store.get
    store.get = lambda clip_ref: served.append(get(clip_ref)) or served[-1]
    with torch.no_grad():
        got = m.forward(VAL[0]["messages"], store.get(VAL[0]["clip"])).loss.float()
    assert torch.allclose(got, ref, rtol=1e-3), (got, ref)  # the reloaded model is the trained one (equal here)
    print(f"[widths] reloaded loss {got.item():.5f}, trained {ref.item():.5f}", flush=True)
    metrics, preds = evaluate_model(m, VAL, HeatmapView(store, "zeros"), cfg.stage2.eval_max_new_tokens)
    assert served and all(s.pixel_values is not None and s.video_embeds is None for s in served)
    assert len(preds) == sum(len(r["turns"]) for r in VAL) and metrics
    assert all(isinstance(p["answer"], str) for p in preds)
    # notebook 03's judgements on a rerun (its variants already trained): the same store, no Collator
    for zero in (False, True):
        rows = judgement_scores(m, VAL, store, zero_heatmaps=zero)
        assert len(rows) == len(VAL) and all(0.0 <= r["p_yes"] <= 1.0 for r in rows), rows
    tok = m.tokenizer
    assert [tok("Yes")["input_ids"], tok("No")["input_ids"]] == [[9454], [2753]]  # Qwen2.5's ids of the judgement
    answer = m.answer(VAL[0]["messages"][:2], store.get(VAL[0]["clip"]), max_new_tokens=6)
    assert isinstance(answer, str)
    assert tok.decode(tok(answer)["input_ids"]) == answer  # decodes with the real tokenizer
    times["eval"] = time.time() - t
    times["total"] = time.time() - t_all
    print(f"\n7B-wide chain: {', '.join(f'{k} {v:.0f}s' for k, v in times.items())}; "
          f"peak RSS {_rss_gb():.1f} GiB; answer {answer!r}")
    assert _rss_gb() < 20, f"peak RSS {_rss_gb():.1f} GiB: more than one wide backbone held at once?"
