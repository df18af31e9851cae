"""Stage-2 step throughput (tokens/s) with cached heatmaps, on the tiny pretrained backbone.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/stage2.py             # cpu preset sizes
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/stage2.py --tiny      # a few steps (the test runs this)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/stage2.py --profile   # + cProfile of the measured loop

The repo's stage-2 code on `assets/tiny-qwen2.5-vl` (cpu preset: 24-frame 224x224 clips at 8 fps,
i.e. 12 x 16 x 16 patches, 768 video tokens and 12 x 14 = 168 anomaly prompts per clip), with
chat-shaped synthetic dialogues shaped like the corpus's (system prompt, 6 question/answer turns):

1. `loop`: a measured loop over the repo's parts: `TVAD.build` (RAE + prompt tokens + hook),
   `ClipStore` (heatmaps and merged video tokens computed once, then cached: "cached heatmaps"),
   the stage-2 `Collator` (chat template + tokenisation every step, as in training), peft LoRA on
   q_proj/v_proj of every decoder layer (phase A), forward + backward + AdamW step. Median step
   time -> tokens/s (real tokens, padding excluded), with the collation time reported apart, and
   the video given as cached merged tokens ("embeds", the cpu preset) and as pixels (the ViT runs
   every step, the paper preset's `video_input`).
2. `train_phase`: `tvad.train.stage2.train_phase` (TRL SFTTrainer) end to end for one epoch over
   the same dialogues: tokens / trainer wall time (startup and the final merge excluded, as
   `PhaseResult.seconds` measures it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, PeakRSS, emit, machine, profile, stats, timed, versions  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

SYSTEM = ("You are a video anomaly analyst watching a fixed surveillance camera. Frames are numbered from 1; places "
          "are named on a 3x3 grid (upper-left, upper, upper-right, left, central, right, lower-left, lower, "
          "lower-right areas).")
COLOURS = ["red", "blue", "green", "black", "white", "grey"]
AREAS = ["upper-left", "upper", "upper-right", "left", "central", "right", "lower-left", "lower", "lower-right"]


def dialogue(i: int, turns: int = 6) -> list[dict]:
    """A corpus-shaped dialogue: system, then question/answer turns of the corpus's lengths."""
    rng = np.random.default_rng(i)
    msgs = [{"role": "system", "content": SYSTEM}]
    for k in range(turns):
        c, a, b = rng.choice(COLOURS), rng.choice(AREAS), rng.choice(AREAS)
        f0, f1 = sorted(int(x) for x in rng.integers(1, 25, 2))
        if k % 3 == 0:
            q = f"How does the {c} car move? Describe its direction, speed and path."
            ans = (f"Target {k + 1} moves from frame {f0} to frame {f1}, initially positioned in the {a} area, passing "
                   f"through the central area, then slowly shifts, reaching the {b} area, showing a wide, "
                   f"cross-regional range of motion and a smooth, slow speed.")
        elif k % 3 == 1:
            q = f"Which object moves from the {a} area to the {b} area between frames {f0} and {f1}? Describe it."
            ans = f"The target is a {c} car."
        else:
            q = f"Does the {c} car move to the {b} area?"
            ans = "Yes, it does." if rng.random() < 0.5 else "No, it does not."
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]
    return msgs


def records(n: int, frames: int, size: int, fps: float) -> tuple[list[dict], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    recs, arrays = [], {}
    for i in range(n):
        name = f"clip{i}"
        arrays[name] = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
        recs.append({"id": f"a/train/{name}", "clip": {"name": name, "num_frames": frames, "fps": fps,
                                                       "size": [size, size]},
                     "messages": dialogue(i)})
    return recs, arrays


def fresh_model(layers: list[int]):
    """The tiny backbone, an (untrained) AHD on its blocks, and a fresh TVAD with the RAE."""
    from tvad.config import AHDConfig, RAEConfig
    from tvad.model.backbone import from_pretrained
    from tvad.model.tvad import TVAD
    from tvad.model.build import build_ahd

    bb = from_pretrained(REPO / "assets" / "tiny-qwen2.5-vl", max_pixels=224 * 224)
    ahd = build_ahd(bb, AHDConfig(), layers)
    meta = {"backbone": {"layers": layers, "identity": bb.identity}}
    return TVAD.build(bb, ahd, meta, RAEConfig(), use_rae=True, seed=0, meta={"fps": 8.0})


def measured_loop(recs, arrays, layers, cfg, steps: int, video_input: str, prof: bool = False) -> dict:
    from peft import LoraConfig, get_peft_model

    from tvad.train.stage2 import ClipResolver, ClipStore, Collator, check_clips

    model = fresh_model(layers)
    clips = ClipStore(model, ClipResolver(arrays=arrays), None, video_embeds=video_input == "embeds")
    t0 = time.perf_counter()
    check_clips(recs, clips)  # heatmaps (+ video tokens) computed once: the cache every step reads
    encode_s = time.perf_counter() - t0
    lcfg = LoraConfig(r=int(cfg.lora_r), lora_alpha=int(cfg.lora_alpha), lora_dropout=float(cfg.lora_dropout),
                      target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model.qwen, lcfg)
    model.set_trainable(True)
    if cfg.gradient_checkpointing:
        model.qwen.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pm.train()
    trainable = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=float(cfg.lr))
    col = Collator(model, recs, clips, int(cfg.max_length), video_input)
    tokens, coll_t, step_t = [], [], []
    k = [0]

    def one():
        i = k[0] % len(recs)
        k[0] += 1
        t1 = time.perf_counter()
        batch = col([{"idx": i}])
        t2 = time.perf_counter()
        loss = pm(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        coll_t.append(t2 - t1)
        step_t.append(t3 - t1)
        tokens.append(int(batch["attention_mask"].sum()))
        return float(loss.detach())

    one()  # warm-up
    coll_t.clear(), step_t.clear(), tokens.clear()
    with PeakRSS() as mem:
        for _ in range(steps):
            one()
    st, cs = stats(step_t), stats(coll_t)
    tok = float(np.mean(tokens))
    out = {"video_input": video_input, "steps": steps, "tokens_per_step": round(tok, 1), "step_s": st,
           "tokens_per_s": {"median": round(tok / st["median"], 1), "min": round(tok / st["max"], 1),
                            "max": round(tok / st["min"], 1)},
           "collate_s": cs, "collate_share": round(cs["median"] / st["median"], 3),
           "clip_encode_once_s_per_clip": round(encode_s / len(recs), 4),
           "peak_rss_above_entry_mb": mem.mb, "trainable_params": sum(p.numel() for p in trainable)}
    if prof:
        _, rows = profile(lambda: [one() for _ in range(max(2, steps // 2))], top=20, sort="tottime")
        out["profile_tottime"] = rows
    return out


def phase(recs, arrays, layers, cfg) -> dict:
    from tvad.train.stage2 import ClipResolver, ClipStore, Collator, check_clips, train_phase

    model = fresh_model(layers)
    clips = ClipStore(model, ClipResolver(arrays=arrays), None, video_embeds=cfg.video_input == "embeds")
    check_clips(recs, clips)
    col = Collator(model, recs, clips, int(cfg.max_length), cfg.video_input)
    tokens = sum(len(col.encode(r)[0].input_ids) for r in recs) * float(cfg.epochs)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = train_phase(model, "a", recs, [], clips, cfg, Path(d) / "phase_a", resume=False, progress=False,
                          log=lambda s: None)
        wall = time.perf_counter() - t0
    return {"dialogues": len(recs), "epochs": float(cfg.epochs), "grad_accum": int(cfg.grad_accum),
            "optimizer_steps": res.steps, "tokens": int(tokens), "trainer_s": round(res.seconds, 3),
            "wall_s_incl_setup_merge_save": round(wall, 3), "tokens_per_s": round(tokens / res.seconds, 1),
            "s_per_dialogue": round(res.seconds / (len(recs) * float(cfg.epochs)), 4)}


def main(argv=None) -> dict:
    from tvad.config import preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="2 dialogues, 2 measured steps (a smoke run)")
    ap.add_argument("--dialogues", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="measured steps of the loop")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--skip-phase", action="store_true", help="only the measured loop")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON path ('-': print only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.dialogues, args.steps, args.frames = 2, 2, 8
    cfg = preset("cpu").stage2
    cfg.eval_steps, cfg.epochs = 10 ** 6, 1.0  # no mid-phase checkpoints: time the training only
    layers = list(preset("cpu").backbone.layers)
    recs, arrays = records(args.dialogues, args.frames, 224, 8.0)
    rec = {"benchmark": "stage2", "tiny": args.tiny, "machine": machine(), "versions": versions(),
           "backbone": "assets/tiny-qwen2.5-vl", "clip": f"{args.frames}x224x224 at 8 fps", "dialogues": args.dialogues,
           "stage2_config": {k: getattr(cfg, k) for k in ("lr", "grad_accum", "max_length", "lora_r", "lora_targets",
                                                          "gradient_checkpointing", "video_input")}}
    t0 = time.perf_counter()
    rec["loop"] = {m: measured_loop(recs, arrays, layers, cfg, args.steps, m, args.profile and m == "embeds")
                   for m in (("embeds",) if args.tiny else ("embeds", "pixels"))}
    if not args.skip_phase:
        rec["train_phase"] = phase(recs, arrays, layers, cfg)
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    out = args.out or (str(REPO / "benchmarks" / "results" / "stage2_tiny.json") if args.tiny else None)
    emit(rec, "stage2", out)
    return rec


if __name__ == "__main__":
    main()
