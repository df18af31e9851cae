"""Instruction-tune the tiny Qwen2.5-VL of the `cpu` preset on oracle dialogues of the `pretrain` split.

`pretrain_tiny` teaches the tiny decoder the synthetic world's vocabulary through captions only; a
real LVLM has also seen instruction data (multi-turn questions and answers about videos). Without
that, stage 2's LoRA has to teach the decoder dialogue from scratch and fails (issue 7, "The tiny
backbone's language"). This step closes the gap the way an LVLM's own instruction tuning does:

* data: the synthetic `pretrain` split only (disjoint from train / val / test videos), the same
  root as `pretrain_tiny` (data/pretrain-tiny, 400 videos, generated if missing); oracle
  dialogues from `tvad.corpus.build_corpora` with the pretrain videos as its "train" split (both
  the phase-A all-object and the phase-B anomaly-focused dialogues, i.e. the same question
  templates and answer formats stage 2 trains on and evaluates: Yes/No first, Target, Trajectory,
  temporal). The last `val_videos` pretrain videos go to the "validation" side, which builds
  their dialogues exactly as stage 2 builds `stage2/test_corpus`; they only monitor the loss.
* model: the clip's merged tokens from the frozen ViT (computed once per video), rendered with
  `tvad.model.tvad.encode_dialogue` (Qwen's chat template, video in the first user turn, labels on
  the assistant answers only) without stage 2's prompt tokens; full fine-tuning of the decoder
  layers and final norm (+ lm_head when it is not tied to the input embeddings), and (default,
  `embed_rows`) the embedding rows of the tokens that occur in no eq.-2 prompt. The ViT and the
  embedding rows of every prompt token stay frozen, bit for bit, so the AHD's text features (eq. 2,
  the mean embedding of a prompt's tokens) and visual features are unchanged.
  Why the rows: the captions of `pretrain_tiny` never contain the answer words ("Yes", "No", ...),
  so with the tied embedding / LM head their rows were trained only as negatives; with them frozen
  the decoder alone never learned to start an answer with "Yes"/"No" (teacher-forced first-token
  accuracy 0.00 on the held-out dialogues after 960 steps), and stage 2's Yes/No turns collapsed.
  A real LVLM has those words in its vocabulary from its own pretraining.
* output: only `model.safetensors` of the asset is replaced (atomically); the run's log lines are
  appended to `instruct_log.jsonl` and a summary written to `instruct_summary.json` beside it.

    python -m tvad.train.instruct_tiny --asset assets/tiny-qwen2.5-vl        # after pretrain_tiny

Deterministic for a seed (fixed step count, seeded data order, 1 torch thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tvad.corpus import build_corpora, load_corpus
from tvad.io import atomic_write_json, resolve_path
from tvad.model.backbone import from_pretrained
from tvad.model.tvad import encode_dialogue
from tvad.prompts import EVENTS, all_template_text, class_prompts
from tvad.run import seed_everything
from tvad.train.clips import ClipResolver
from tvad.train.pretrain_tiny import (  # the same schedule and step as the pretraining
    clipped_step,
    lr_at,
    pretrain_videos,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOG_FILE = "instruct_log.jsonl"
SUMMARY_FILE = "instruct_summary.json"


@dataclass
class InstructConfig:
    asset: str = "assets/tiny-qwen2.5-vl"  # tiny backbone directory (its model.safetensors is replaced)
    data_root: str = "data/pretrain-tiny"  # synthetic dataset root of the pretrain split (as pretrain_tiny)
    num_videos: int = 400  # pretrain videos generated/used (as pretrain_tiny: nothing regenerated)
    data_seed: int = 0  # the synthetic dataset's seed (as pretrain_tiny)
    train_videos: int = 200  # pretrain videos whose dialogues are trained on (0: all but the val ones)
    balance: bool = True  # as many normal as anomalous training videos (the pretrain split is 3/4 anomalous),
    #                      so the clip-level "is there an anomaly?" answer is no prior of the question
    val_videos: int = 16  # last pretrain videos held out to monitor the loss (built like stage 2's test corpus)
    phases: str = "ab"  # corpora used: "a" all-object, "b" anomaly-focused dialogues
    seed: int = 0  # data order
    steps: int = 960  # optimizer steps (one dialogue each)
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-5  # cosine floor
    warmup: int = 48  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay
    embed_rows: bool = True  # also train the embedding rows of tokens in no eq.-2 prompt (the prompt rows stay)
    max_length: int = 2048  # token limit per dialogue (later turns dropped whole, as in stage 2)
    threads: int = 1  # torch threads (1: measured 10x faster than 2 on the shared CPU box)
    log_every: int = 40  # log a line every N steps
    work_dir: str = ""  # corpus + clip cache (default: a temporary directory, removed afterwards)


# -- data -------------------------------------------------------------------------------------------

def balanced(videos: Sequence, n: int = 0) -> list:
    """Normal and anomalous videos alternately, in their order, while both last (at most `n`; 0: all
    pairs). A backbone instruction-tuned on the pretrain split's 3:1 mix learned to answer "Yes" to
    "is there an anomaly?" with p = 0.96 whatever the clip, and 24-96 stage-2 steps on balanced
    dialogues did not move it; real LVLMs come without such a prior answer."""
    pools = {0: [v for v in videos if v.label == 0], 1: [v for v in videos if v.label == 1]}  # Video.label
    k = min(len(pools[0]), len(pools[1]))
    if n > 0:
        k = min(k, n // 2)
    if k == 0:
        raise ValueError(f"balance needs normal and anomalous pretrain videos; got {len(pools[0])} normal, "
                         f"{len(pools[1])} anomalous")
    return [v for pair in zip(pools[1][:k], pools[0][:k]) for v in pair]


def build_dialogues(videos: Sequence, cfg: InstructConfig, corpus_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train, val) oracle dialogue records of the pretrain videos (phases `cfg.phases`)."""

    nval = max(0, min(int(cfg.val_videos), len(videos) - 1))
    val = list(videos[len(videos) - nval:]) if nval else []
    rest = list(videos[: len(videos) - nval])
    if cfg.balance:
        train = balanced(rest, cfg.train_videos)
    else:
        train = rest[: cfg.train_videos] if cfg.train_videos > 0 else rest
    if not train:
        raise ValueError("no pretrain videos to instruction-tune on")
    build_corpora({"train": train, "validation": val}, corpus_dir, annotator="oracle", seed=cfg.seed)
    tr, va = [], []
    for ph in cfg.phases:
        if ph not in "ab":
            raise ValueError(f"phases must be made of 'a' and 'b', got {cfg.phases!r}")
        tr += load_corpus(corpus_dir / f"phase_{ph}.train.jsonl")
        if val:
            va += load_corpus(corpus_dir / f"phase_{ph}.val.jsonl")
    return tr, va


@dataclass
class Clip:
    video_embeds: torch.Tensor  # (N_v, D) merged tokens of the frozen ViT
    grid_thw: torch.Tensor  # (1, 3)
    second_per_grid_ts: torch.Tensor  # (1,)


@torch.no_grad()
def encode_clips(bb, records: Sequence[dict], videos: Sequence, log: Callable = print) -> dict[str, Clip]:
    """{clip name: Clip} for every record's clip (one frozen-ViT pass each)."""

    resolver = ClipResolver(videos)
    out: dict[str, Clip] = {}
    t0 = time.time()
    for r in records:
        c = r["clip"]
        if c["name"] in out:
            continue
        frames = resolver(c)
        inp = bb.preprocess(frames, float(c.get("fps") or 8.0))
        vf = bb.features_from_pixels(inp["pixel_values_videos"], inp["video_grid_thw"], [bb.depth - 1], merged=True,
                                     num_frames=len(frames))
        out[c["name"]] = Clip(vf.merged.detach().clone(), inp["video_grid_thw"].long(),
                              inp["second_per_grid_ts"].float())
    log(f"[instruct] {len(out)} clips through the frozen ViT in {time.time() - t0:.0f}s")
    return out


def inputs(bb, rec: dict, clip: Clip, max_length: int) -> dict:
    """Forward kwargs (with labels) of one dialogue: chat template, video tokens, answers supervised."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling


    vid = int(bb.model.config.video_token_id)
    enc = encode_dialogue(bb.tokenizer, rec["messages"], int(clip.grid_thw.prod()) // 4, 0, vid,
                          max_length=max_length)
    return {"input_ids": enc.input_ids[None], "labels": enc.labels[None],
            "attention_mask": torch.ones_like(enc.input_ids)[None], "mm_token_type_ids": enc.mm_token_type_ids[None],
            "video_grid_thw": clip.grid_thw, "second_per_grid_ts": clip.second_per_grid_ts,
            "mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=(clip.video_embeds,))}}


# -- parameters -------------------------------------------------------------------------------------

def tied(model) -> bool:
    """True when lm_head shares its weight with the input embedding table."""
    return model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The decoder layers + final norm (+ lm_head when untied). Never the ViT or the embedding table."""
    lm = model.model.language_model
    named = {f"model.language_model.layers.{n}": p for n, p in lm.layers.named_parameters()}
    named.update({f"model.language_model.norm.{n}": p for n, p in lm.norm.named_parameters()})
    if not tied(model):
        named.update({f"lm_head.{n}": p for n, p in model.lm_head.named_parameters()})
    emb = model.get_input_embeddings().weight
    vis = {id(p) for p in model.model.visual.parameters()}
    for n, p in named.items():
        if p is emb or id(p) in vis:
            raise RuntimeError(f"{n} is the embedding table or part of the ViT; it must stay frozen")
    return named


def prompt_token_ids(tokenizer) -> torch.Tensor:
    """(P,) sorted ids of every token of every eq.-2 prompt (`tvad.prompts.all_template_text`, and the
    `class_prompts` of every dataset, whose joined event phrases add "," and "or"), plus the
    tokenizer's special tokens: the embedding rows that stay frozen."""

    texts = list(all_template_text())
    for ds in EVENTS:
        for k in (1, 8, 16):
            for group in class_prompts(ds, k=k):
                texts += group
    ids = {int(i) for t in texts for i in tokenizer(t)["input_ids"]}  # as Backbone.text_features tokenizes
    ids |= {int(i) for i in tokenizer.all_special_ids}
    return torch.tensor(sorted(ids), dtype=torch.long)


def frozen_state(model, keep_rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Copies of the tensors that must not change: the ViT and the input embedding table (only its
    `keep_rows` when given)."""
    d = {f"model.visual.{k}": v.detach().clone() for k, v in model.model.visual.state_dict().items()}
    w = model.get_input_embeddings().weight.detach()
    d["embed_tokens"] = (w if keep_rows is None else w[keep_rows]).clone()
    return d


def check_frozen(model, before: dict[str, torch.Tensor], keep_rows: torch.Tensor | None = None) -> None:
    after = frozen_state(model, keep_rows)
    bad = [k for k in before if not torch.equal(before[k], after[k])]
    if bad:
        raise RuntimeError(f"frozen tensors changed: {bad[:5]}")


# -- training ---------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(bb, records: Sequence[dict], clips: dict[str, Clip], max_length: int) -> dict:
    """Mean answer loss over `records` and teacher-forced accuracy of the first answer token of the
    Yes/No turns (the word the Yes/No metric parses)."""
    if not records:
        return {}
    model = bb.model
    was = model.training
    model.eval()
    tok = bb.tokenizer
    yes_no = {tok("Yes", add_special_tokens=False)["input_ids"][0], tok("No", add_special_tokens=False)["input_ids"][0]}
    losses, hits, n = [], 0, 0
    for r in records:
        kw = inputs(bb, r, clips[r["clip"]["name"]], max_length)
        out = model(**kw)
        losses.append(float(out.loss))
        lab = kw["labels"][0]
        pred = out.logits[0, :-1].argmax(-1)
        tgt = lab[1:]
        starts = (tgt != -100) & torch.cat([torch.tensor([True]), lab[1:-1] == -100])
        for i in torch.nonzero(starts & torch.isin(tgt, torch.tensor(sorted(yes_no)))).flatten().tolist():
            hits += int(pred[i] == tgt[i])
            n += 1
    model.train(was)
    return {"loss": float(np.mean(losses)), "yes_no_first_token_acc": hits / n if n else float("nan"), "yes_no_n": n}


def train(bb, train_recs: Sequence[dict], val_recs: Sequence[dict], clips: dict[str, Clip], cfg: InstructConfig,
          log: Callable = print, log_rows: list | None = None) -> dict:
    """Fine-tune `bb.model`'s decoder in place. Returns {"before", "after", "steps", "train_loss_*", "seconds"}."""

    seed_everything(cfg.seed)
    model = bb.model
    params = trainable_parameters(model)
    keep = None
    if cfg.embed_rows:
        emb = model.get_input_embeddings().weight
        keep = prompt_token_ids(bb.tokenizer)
        params["model.language_model.embed_tokens.weight"] = emb
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    frozen = frozen_state(model, keep)
    t0 = time.time()
    before = evaluate(bb, val_recs, clips, cfg.max_length)
    log(f"[instruct] before: {before}")
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = np.random.default_rng(cfg.seed)
    order: list[int] = []
    run = first = None
    model.train()
    rows = log_rows if log_rows is not None else []
    for step in range(cfg.steps):
        if not order:
            order = gen.permutation(len(train_recs)).tolist()
        r = train_recs[order.pop()]
        out = model(**inputs(bb, r, clips[r["clip"]["name"]], cfg.max_length))
        loss = out.loss
        clipped_step(opt, loss, list(params.values()), lr_at(step, cfg), f"instruction loss at step {step}")
        if keep is not None:  # the prompt tokens' rows back, bit for bit (AdamW may move zero-grad rows)
            with torch.no_grad():
                emb[keep] = frozen["embed_tokens"]
        v = float(loss.detach())
        first = v if first is None else first
        run = v if run is None else 0.95 * run + 0.05 * v
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            row = {"step": step, "loss": round(v, 4), "loss_ema": round(run, 4), "lr": lr_at(step, cfg),
                   "elapsed_s": round(time.time() - t0, 1)}
            rows.append(row)
            log(f"[instruct] {row}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    check_frozen(model, frozen, keep)
    after = evaluate(bb, val_recs, clips, cfg.max_length)
    log(f"[instruct] after: {after}")
    return {"before": before, "after": after, "steps": cfg.steps, "train_loss_first": first,
            "train_loss_final_ema": run, "seconds": round(time.time() - t0, 1),
            "trainable_params": int(sum(p.numel() for p in params.values())
                                    - (0 if keep is None else keep.numel() * emb.shape[1])),
            "tied_lm_head": tied(model),
            "trained": sorted({k.rsplit(".", 1)[0] for k in params}),
            "frozen_embedding_rows": None if keep is None else int(keep.numel())}


def _stamp(f: Path) -> tuple[int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def save_weights(bb, asset: Path, stamp: tuple[int, int] | None = None) -> int:
    """Replace `asset/model.safetensors` atomically with `bb.model`'s weights. Returns its size.
    `stamp` (size, mtime) of the file that was loaded: refuse if someone replaced it meanwhile."""
    if stamp is not None and _stamp(asset / "model.safetensors") != stamp:
        raise RuntimeError(f"{asset}/model.safetensors changed while instruction-tuning (regenerated by "
                           "pretrain_tiny?); rerun instruct_tiny on the new weights")
    tmp = Path(tempfile.mkdtemp(prefix=".instruct-", dir=asset.parent))
    try:
        bb.model.save_pretrained(tmp)
        files = sorted(tmp.glob("*.safetensors"))
        if [f.name for f in files] != ["model.safetensors"]:
            raise RuntimeError(f"expected one model.safetensors, got {[f.name for f in files]}")
        size = files[0].stat().st_size
        if size > 20 * 2**20:
            raise RuntimeError(f"tiny backbone weights are {size / 2**20:.1f} MiB > 20 MiB")
        os.chmod(files[0], 0o644)  # mkdtemp's 0700 must not leak into the asset
        os.replace(files[0], asset / "model.safetensors")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return size


def instruct(cfg: InstructConfig, log: Callable = print, videos: Sequence | None = None) -> dict:
    """The whole step: data, dialogues, clips, training, checks, save. Returns the summary."""
    torch.set_num_threads(int(cfg.threads))
    t0 = time.time()
    asset = resolve_path(cfg.asset)
    if not (asset / "model.safetensors").is_file():
        raise FileNotFoundError(f"{asset}/model.safetensors not found: run tvad.train.pretrain_tiny first")
    videos = list(videos) if videos is not None else pretrain_videos(cfg.data_root, cfg.num_videos, cfg.data_seed)
    log(f"[instruct] {len(videos)} pretrain videos")
    work = Path(cfg.work_dir) if cfg.work_dir else Path(tempfile.mkdtemp(prefix="tvad-instruct-"))
    try:
        train_recs, val_recs = build_dialogues(videos, cfg, work / "corpus")
        log(f"[instruct] dialogues: train {len(train_recs)}, val {len(val_recs)} ({time.time() - t0:.0f}s)")
        stamp = _stamp(asset / "model.safetensors")
        bb = from_pretrained(asset)
        clips = encode_clips(bb, train_recs + val_recs, videos, log)
        rows: list[dict] = []
        res = train(bb, train_recs, val_recs, clips, cfg, log, rows)
    finally:
        if not cfg.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    size = save_weights(bb, asset, stamp)
    summary = {"config": asdict(cfg), **res, "train_dialogues": len(train_recs), "val_dialogues": len(val_recs),
               "wall_s": round(time.time() - t0, 1), "weights_bytes": size, "torch": torch.__version__,
               # the tokenizer this asset's rows were trained with (tvad.model.backbone.check_tiny_asset)
               "tokenizer_sha256": hashlib.sha256((asset / "tokenizer.json").read_bytes()).hexdigest(),
               "note": "deterministic for a seed and thread count on one machine; ViT + the eq.-2 prompt tokens' embedding rows frozen"}
    with open(asset / LOG_FILE, "a") as f:
        f.write(json.dumps({"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": asdict(cfg)}) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"before": res["before"], "after": res["after"], "wall_s": summary["wall_s"]}) + "\n")
    atomic_write_json(asset / SUMMARY_FILE, summary)
    log(f"[instruct] saved {asset / 'model.safetensors'} ({size / 2**20:.1f} MiB) in {summary['wall_s']:.0f}s")
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Instruction-tune the tiny Qwen2.5-VL backbone (cpu preset).")
    for f in dataclasses.fields(InstructConfig):
        if isinstance(f.default, bool):
            ap.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        else:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    instruct(InstructConfig(**vars(ap.parse_args(argv))))


if __name__ == "__main__":
    main()
