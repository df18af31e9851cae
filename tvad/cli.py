"""The `tvad` command.

    tvad pipeline --preset cpu --run-dir runs/cpu [--from NB] [--to NB] [--force] [-p key=value ...]
                  [--launcher configs/accelerate/ddp.yaml]   # notebooks 02-04 in several processes
    tvad probe VIDEO          # frames, fps and size of a video file
    tvad config --preset cpu  # print the resolved configuration as YAML
    tvad detect VIDEO --checkpoint DIR --out DIR   # overlay mp4, per-frame scores CSV, regions JSON
    tvad chat VIDEO --checkpoint DIR               # multi-turn dialogue about a video in the terminal
    tvad eval --run-dir DIR                        # rebuild the tables from a run's saved predictions
    tvad plan --preset paper [-p key=value ...] [--json]   # check model + datasets, predict costs (docs/plan.md)
    tvad study --preset cpu --seeds 0 1 2 --out runs/study [-p key=value ...] [--to 03] [--write-docs docs/results.md]
                                                   # stages 1-2 per training seed, mean +- std (tvad/study.py)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tvad
from tvad.config import preset
from tvad.data.video import VideoError, probe, read_frames, sample_indices, write_video
from tvad.evaluate import EvalError, main_eval
from tvad.io import atomic_write_json, atomic_write_text
from tvad.pipeline import PipelineError, main_pipeline, parse_overrides
from tvad.plan import format_plan, make_plan
from tvad.study import main_study
from tvad.viz.overlays import draw_boxes, overlay_heatmap


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvad", description="Text-guided fine-grained video anomaly detection")
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="run the numbered notebooks in order with papermill")
    pl.add_argument("--preset", default="cpu", help="configuration preset: cpu or paper")
    pl.add_argument("--run-dir", default=None, help="run directory (default runs/<preset>)")
    pl.add_argument("--from", dest="start", default=None, help="first notebook (e.g. 02)")
    pl.add_argument("--to", dest="stop", default=None, help="last notebook (e.g. 03)")
    pl.add_argument("--force", action="store_true", help="redo work whose outputs exist")
    pl.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="config override with a dotted key, e.g. stage1.epochs=2 (repeatable)")
    pl.add_argument("--launcher", default=None, metavar="ACCELERATE_CONFIG",
                    help="run notebooks 02-04 under `accelerate launch --config_file` this file, e.g. "
                         "configs/accelerate/ddp.yaml (docs/multi-gpu.md)")
    pl.add_argument("--stage2-launcher", default=None, metavar="ACCELERATE_CONFIG",
                    help="another accelerate config for notebook 03 only, e.g. configs/accelerate/deepspeed_zero2.yaml")

    st = sub.add_parser("study", help="run the chain's stages 1-2 once per training seed and report mean ± std")
    st.add_argument("--preset", default="cpu", help="configuration preset: cpu or paper")
    st.add_argument("--seeds", nargs="*", default=["0", "1", "2"], metavar="S",
                    help="training seeds (stage1.seed, stage2.seed, eval.seeds); default 0 1 2")
    st.add_argument("--out", default=None, help="study folder, one run dir per seed (default runs/study)")
    st.add_argument("--to", dest="stop", default="03",
                    help="last notebook of each seed's chain (default 03; 04 adds the evaluation's tables)")
    st.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every seed, e.g. stage1.epochs=2 (repeatable; not the seed keys)")
    st.add_argument("--write-docs", default=None, metavar="MARKDOWN",
                    help="replace the <!-- study:begin/end --> section of this file, e.g. docs/results.md")
    st.add_argument("--quiet", action="store_true", help="no notebook progress bars")

    pr = sub.add_parser("probe", help="print a video's frame count, fps and size")
    pr.add_argument("video")

    cf = sub.add_parser("config", help="print a preset's resolved configuration")
    cf.add_argument("--preset", default="cpu")
    cf.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")

    dt = sub.add_parser("detect", help="anomaly heatmaps of a video: overlay mp4, frame scores CSV, regions JSON")
    dt.add_argument("video")
    dt.add_argument("--checkpoint", required=True, help="a checkpoint directory or a run directory")
    dt.add_argument("--out", required=True, help="output directory")
    dt.add_argument("--fps", type=float, default=None, help="resample the video to this rate first (default: all frames)")
    dt.add_argument("--max-side", type=int, default=640,
                    help="downscale frames so the longer side is at most this (0 keeps the size)")
    dt.add_argument("--threshold", type=float, default=0.5, help="heatmap binarisation for regions (default 0.5)")
    dt.add_argument("--window", type=int, default=16, help="frames per detection window (even; bounds memory)")
    dt.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    dt.add_argument("--no-video", action="store_true", help="skip the overlay mp4")
    dt.add_argument("--quiet", action="store_true", help="no progress bar")

    ch = sub.add_parser("chat", help="a multi-turn dialogue about a video in the terminal")
    ch.add_argument("video")
    ch.add_argument("--checkpoint", required=True, help="a checkpoint directory or a run directory")
    ch.add_argument("--max-new-tokens", type=int, default=96)
    ch.add_argument("--device", default=None)
    ch.add_argument("-q", "--question", action="append", default=[],
                    help="ask this question (repeatable) instead of reading questions from the terminal")

    ev = sub.add_parser("eval", help="rebuild the paper's tables from a run directory's saved predictions")
    ev.add_argument("--run-dir", required=True)
    ev.add_argument("--quiet", action="store_true", help="write the tables without printing them")

    pn = sub.add_parser("plan", help="check the model and datasets and predict disk, GPU memory and time, before a run")
    pn.add_argument("--preset", default="paper", help="configuration preset: cpu or paper")
    pn.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="config override with a dotted key, e.g. backbone.path=/models/qwen (repeatable)")
    pn.add_argument("--run-dir", default=None, help="a run directory whose corpus gives exact dialogue lengths")
    pn.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 TFLOP/s (default 800)")
    pn.add_argument("--utilisation", type=float, default=None, help="fraction of that rate a step reaches (default 0.4)")
    pn.add_argument("--json", action="store_true", help="print the plan as JSON instead of the table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pipeline":
        args.run_dir = args.run_dir or f"runs/{args.preset}"
        return main_pipeline(args)
    if args.command == "study":
        args.out = args.out or "runs/study"
        return main_study(args)
    if args.command == "probe":
        try:
            info = probe(args.video)
        except VideoError as e:
            print(f"tvad probe: error: {e}", file=sys.stderr)
            return 1
        print(f"{args.video}: {info.num_frames} frames, {info.fps:.3f} fps, {info.width}x{info.height}")
        return 0
    if args.command == "config":
        try:
            print(preset(args.preset, parse_overrides(args.param)).to_yaml(), end="")
        except (KeyError, ValueError, PipelineError) as e:
            print(f"tvad config: error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "detect":
        return _detect(args)
    if args.command == "chat":
        return _chat(args)
    if args.command == "eval":
        try:
            main_eval(args.run_dir, quiet=args.quiet)
        except (EvalError, OSError, KeyError) as e:  # an OSError's args[0] is its errno: print it whole
            print(f"tvad eval: error: {e if isinstance(e, OSError) else e.args[0] if e.args else e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "plan":
        return _plan(args)
    return 2


def _plan(args) -> int:
    """`tvad plan`: the table (or JSON) on stdout, one line per problem; exit 1 if any problem."""
    import json

    try:
        cfg = preset(args.preset, parse_overrides(args.param))
    except (KeyError, ValueError, PipelineError) as e:
        print(f"tvad plan: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    kw = {}
    if args.peak_tflops is not None:
        kw["peak_tflops"] = args.peak_tflops
    if args.utilisation is not None:
        if not 0 < args.utilisation <= 1:
            print(f"tvad plan: error: --utilisation must be in (0, 1], got {args.utilisation}", file=sys.stderr)
            return 1
        kw["utilisation"] = args.utilisation
    plan = make_plan(cfg, run_dir=args.run_dir, **kw)
    if args.json:
        print(json.dumps(plan.to_json(), indent=1, default=str))
        for p in plan.problems:
            print(f"tvad plan: problem: {p}", file=sys.stderr)
    else:
        print(format_plan(plan))
    return 1 if plan.problems else 0


# -- detect / chat ----------------------------------------------------------------------------------

class _CliError(Exception):
    """A one-line error for the user (no traceback)."""


def _check_device(device: str | None) -> None:
    """--device: None or auto (cuda when available), cpu, cuda[:N] on a machine that has it, or mps."""
    if device is None or device == "auto":
        return
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise _CliError(f"--device {device}: not a device (use cpu, cuda, cuda:N, mps or auto)") from None
    if d.type == "cpu":
        return
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise _CliError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
        if d.index is not None and d.index >= n:
            raise _CliError(f"--device {device}: this machine has {n} CUDA device(s) (cuda:0 .. cuda:{n - 1})")
        return
    if d.type == "mps":
        if not torch.backends.mps.is_available():
            raise _CliError(f"--device {device}: MPS is not available here (use --device cpu)")
        return
    raise _CliError(f"--device {device}: unsupported device type {d.type!r} (use cpu, cuda, cuda:N, mps or auto)")


def _check_checkpoint(path: str) -> None:
    """--checkpoint names an existing directory (checked before anything is loaded)."""
    p = Path(path)
    if not p.exists():
        raise _CliError(f"checkpoint {path}: no such directory")
    if not p.is_dir():
        raise _CliError(f"checkpoint {path}: not a directory (pass a checkpoint or run directory)")


def _check_out_dir(out: str) -> None:
    """--out: an existing directory, or a path whose nearest existing parent is a writable directory."""
    p = Path(out)
    if p.exists():
        if not p.is_dir():
            raise _CliError(f"--out {out}: exists and is not a directory")
        if not os.access(p, os.W_OK):
            raise _CliError(f"--out {out}: directory is not writable")
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise _CliError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        raise _CliError(f"--out {out}: cannot create it ({parent} is not writable)")


def _load_model(path: str, device: str | None):
    """`tvad.load` (a full checkpoint, a stage-1 checkpoint or a run directory), errors as one line."""
    _check_checkpoint(path)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weight-loading bar is noise in a terminal tool
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        return tvad.load(path, device=device)
    except (FileNotFoundError, ValueError, OSError, KeyError) as e:
        raise _CliError(f"cannot load checkpoint {path}: {e.args[0] if e.args else e}") from None


def _working_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(H, W) no longer than max_side on the longer side (0: unchanged), both even (H.264 needs it)."""
    s = min(1.0, max_side / max(h, w)) if max_side and max_side > 0 else 1.0
    return max(2, int(round(h * s / 2)) * 2), max(2, int(round(w * s / 2)) * 2)


def _timeline_strip(scores, t: int, width: int, height: int, threshold: float):
    """A uint8 (height, width, 3) strip: the frame-score curve, the threshold, a cursor at frame t."""
    img = Image.new("RGB", (width, height), (20, 20, 28))
    d = ImageDraw.Draw(img)
    n = len(scores)
    top, bot = 4, height - 4

    def xy(i, v):
        x = 0 if n == 1 else i * (width - 1) / (n - 1)
        return x, bot - float(np.clip(v, 0, 1)) * (bot - top)

    ty = xy(0, threshold)[1]
    for x0 in range(0, width, 8):
        d.line([(x0, ty), (min(x0 + 4, width - 1), ty)], fill=(110, 110, 110))
    d.line([xy(i, v) for i, v in enumerate(scores)] if n > 1 else [xy(0, scores[0]), (width - 1, xy(0, scores[0])[1])],
           fill=(235, 70, 60), width=2)
    cx = xy(t, 0)[0]
    d.line([(cx, top), (cx, bot)], fill=(255, 255, 255), width=1)
    d.text((6, 4), f"frame {t}  score {float(scores[t]):.3f}", fill=(255, 255, 255))
    return np.asarray(img)


def _detect(args) -> int:
    def err(msg: str) -> int:
        print(f"tvad detect: error: {msg}", file=sys.stderr)
        return 1

    # every argument checked (and the video probed) before the model loads: a bad one is one line
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        return err(f"--fps must be a finite number > 0, got {args.fps}")
    if not (math.isfinite(args.threshold) and 0 < args.threshold < 1):
        return err(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.window < 2 or args.window % 2:
        return err(f"--window must be an even number >= 2, got {args.window}")
    try:
        _check_device(args.device)
        _check_checkpoint(args.checkpoint)
        _check_out_dir(args.out)
    except _CliError as e:
        return err(str(e))
    try:
        info = probe(args.video)
        if args.fps is not None and args.fps > info.fps * (1 + 1e-6):
            return err(f"--fps {args.fps:g} is above the video's own rate ({info.fps:g} fps): it would repeat "
                       f"frames; use at most {info.fps:g}, or leave --fps out to keep every frame")
        idx = sample_indices(info.num_frames, info.fps, args.fps)
    except VideoError as e:
        return err(str(e))
    if len(idx) < 2:
        return err(f"{args.video}: {len(idx)} frame(s); at least 2 are needed (one temporal patch)")
    fps = float(args.fps or info.fps)
    size = _working_size(info.height, info.width, args.max_side)
    try:
        model = _load_model(args.checkpoint, args.device)
    except _CliError as e:
        return err(str(e))
    n = len(idx)

    def read(a: int, b: int) -> np.ndarray:  # frames [a, b) of the sampled video, at the working size
        return read_frames(args.video, indices=idx[a:b], size=size)

    heat8 = np.zeros((n, *size), np.uint8)  # heatmaps kept as uint8 until the overlay is written
    scores = np.zeros(n, np.float32)
    regions, spans = [], []
    try:  # TVADDetector.windows: even windows read one at a time (a lone last frame joins the previous)
        for a, b, det in model.detector.windows(read, n, fps=fps, window=args.window, threshold=args.threshold,
                                                progress=not args.quiet):
            heat8[a:b] = np.round(np.clip(det.heatmaps, 0, 1) * 255).astype(np.uint8)
            scores[a:b] = det.frame_scores
            regions.append(det.regions)
            spans.append((a, b))
    except (VideoError, ValueError, FloatingPointError) as e:
        return err(str(e.args[0] if e.args else e))
    regions = np.concatenate(regions) if regions else np.zeros((0, 6))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.video).stem
    lines = ["frame,source_frame,time_s,score,regions"]
    counts = np.bincount(regions[:, 0].astype(int), minlength=n) if len(regions) else np.zeros(n, int)
    for t in range(n):
        lines.append(f"{t},{int(idx[t])},{t / fps:.4f},{scores[t]:.6f},{int(counts[t])}")
    csv_path = atomic_write_text(out / f"{stem}_scores.csv", "\n".join(lines) + "\n")
    sy, sx = info.height / size[0], info.width / size[1]
    reg_rows = [{"frame": int(r[0]), "source_frame": int(idx[int(r[0])]), "x1": round(r[1] * sx, 1),
                 "y1": round(r[2] * sy, 1), "x2": round(r[3] * sx, 1), "y2": round(r[4] * sy, 1),
                 "score": round(float(r[5]), 6)} for r in regions]
    json_path = atomic_write_json(out / f"{stem}_regions.json", {
        "video": str(args.video), "checkpoint": str(args.checkpoint), "fps": fps, "num_frames": n,
        "frame_size": [info.height, info.width], "working_size": list(size), "threshold": args.threshold,
        "boxes": "inclusive pixel boxes in the video's own frame size", "regions": reg_rows})
    paths = [csv_path, json_path]
    if not args.no_video:
        strip_h = max(40, size[0] // 6 // 2 * 2)
        frames_out = np.zeros((n, size[0] + strip_h, size[1], 3), np.uint8)
        try:
            for a, b in spans:
                frames = read(a, b)
                for k, t in enumerate(range(a, b)):
                    img = overlay_heatmap(frames[k], heat8[t].astype(np.float32) / 255, 0.45)
                    rt = regions[regions[:, 0] == t] if len(regions) else regions
                    img = draw_boxes(img, rt[:, 1:5], (255, 255, 255), 2)
                    frames_out[t, :size[0]] = img
                    frames_out[t, size[0]:] = _timeline_strip(scores, t, size[1], strip_h, args.threshold)
            paths.append(write_video(out / f"{stem}_overlay.mp4", frames_out, fps=fps))
        except VideoError as e:
            return err(str(e))
    top = int(np.argmax(scores))
    print(f"{args.video}: {n} frames at {fps:g} fps, max score {scores[top]:.3f} at frame {top}, "
          f"{len(regions)} regions >= {args.threshold}")
    for p in paths:
        print(f"  wrote {p}")
    return 0


def _chat(args) -> int:
    def err(msg: str) -> int:
        print(f"tvad chat: error: {msg}", file=sys.stderr)
        return 1

    video = Path(args.video)
    if video.is_dir():
        return err(f"{args.video}: is a directory, not a video file")
    if not video.is_file():
        return err(f"{args.video}: no such video file")
    if args.max_new_tokens < 1:
        return err(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    try:
        _check_device(args.device)
        model = _load_model(args.checkpoint, args.device)
    except _CliError as e:
        return err(str(e))
    if not hasattr(model, "session"):
        return err(f"{args.checkpoint}: this checkpoint cannot chat (no language model parts)")
    try:
        session = model.session(args.video)
    except (VideoError, ValueError) as e:
        return err(str(e.args[0] if e.args else e))

    def ask(q: str) -> int:
        try:
            a = session.ask(q, max_new_tokens=args.max_new_tokens)
        except ValueError as e:
            return err(str(e.args[0] if e.args else e))
        print(f"T-VAD> {a}", flush=True)
        return 0

    if args.question:
        for q in args.question:
            print(f"you> {q}")
            if ask(q):
                return 1
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting about {args.video}. Empty line or 'quit' ends, '/reset' starts over.")
    while True:
        try:
            q = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        q = q.strip()
        if not q or q.lower() in ("quit", "exit", ":q"):
            break
        if q == "/reset":
            session.reset()
            print("(new dialogue)")
            continue
        if not interactive:
            print(f"you> {q}")
        if ask(q):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
