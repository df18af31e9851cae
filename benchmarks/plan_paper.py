"""`tvad plan`'s predictions for the paper preset on the 7B at the paper's dataset sizes (no GPU, no data).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/plan_paper.py [--model DIR] [--out FILE]

The 7B's shapes come from a model directory (default: a 7B-shaped one written to a temporary folder by
`tests/plan_fixtures.write_shaped_checkpoint`: its config, the real Qwen2.5 tokenizer and processor, a
sparse safetensors file; `--model` the downloaded Qwen2.5-VL-7B-Instruct gives the same numbers). The
clip index stands in for the datasets (they are not here): ShanghaiTech at the paper's corpus sizes,
4,108 training / 1,028 validation clips, all 40 frames (the longest clips: an upper bound); UBnormal one
16-frame clip per official video (268 / 64 / 211: its videos are mostly under 40 s; an assumption).
`tvad plan` on the real trees replaces both with the real counts. docs/plan.md prints the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit  # noqa: E402

from tvad.config import preset  # noqa: E402
from tvad.data.clips import Clip  # noqa: E402
from tvad.data.protocol import ClipIndex  # noqa: E402
from tvad.model.flops import H100_BF16_TFLOPS, H100_HBM_TBPS  # noqa: E402
from tvad.plan import Plan, format_plan  # noqa: E402
from tvad.plan.checks import check_model  # noqa: E402
from tvad.plan.estimate import DISK_GBPS, UTILISATION, Shapes, longest_sequence, predict  # noqa: E402

PAPER_CLIPS = [("ubnormal", "train", 268, 16), ("ubnormal", "validation", 64, 16), ("ubnormal", "test", 211, 16),
               ("shanghaitech", "train", 4108, 40), ("shanghaitech", "validation", 1028, 40)]


def paper_index(size=(476, 868)) -> ClipIndex:
    """Stand-in clips at the counts above (no files: only counts, frames and sizes are read)."""
    clips = [Clip(f"{src}-{split}-{i:05d}", f"{src}-{i:05d}", "", src, split, tuple(range(n)), (0,) * n, tuple(size), 1.0)
             for src, split, count, n in PAPER_CLIPS for i in range(count)]
    return ClipIndex(clips, {"stand_in": PAPER_CLIPS})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a Qwen2.5-VL-7B directory (default: a 7B-shaped one, written)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "plan_paper.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tests.plan_fixtures import write_shaped_checkpoint
            from tvad.model.backbone import qwen25vl_7b_config

            model = str(write_shaped_checkpoint(Path(tmp) / "qwen7b", qwen25vl_7b_config()))
        cfg = preset("paper", {"backbone.path": model})
        info, problems = check_model(model)
        if problems:
            raise SystemExit("\n".join(problems))
        index = paper_index()
        plan = Plan(cfg.name, info, assumptions={"peak_bf16_tflops": H100_BF16_TFLOPS, "utilisation": UTILISATION,
                                                 "hbm_tbps": H100_HBM_TBPS, "disk_gbps": DISK_GBPS,
                                                 "gpu": "H100-class (80 GB)"})
        for c in index.clips:
            plan.clips.setdefault(c.source, {}).setdefault(c.split, 0)
            plan.clips[c.source][c.split] += 1
            plan.frames.setdefault(c.source, {}).setdefault(c.split, 0)
            plan.frames[c.source][c.split] += c.num_frames
        shape = Shapes(info, cfg)
        plan.sequence = longest_sequence(shape, cfg, [c for c in index.clips if c.split == "train"])
        plan.problems += plan.sequence.pop("problems")
        plan.stages = predict(shape, cfg, index, plan.sequence)
        plan.notes.append("stand-in clip index (benchmarks/plan_paper.py): ShanghaiTech at the paper's 4,108 / 1,028 "
                          "clips of 40 frames, UBnormal one 16-frame clip per official video")
        text = format_plan(plan)
        rec = emit({"preset": cfg.name, "model": "7B-shaped" if args.model is None else model,
                    **{k: v for k, v in plan.to_json().items() if k != "model"}}, "plan_paper", args.out)
    print(text)
    return rec


if __name__ == "__main__":
    main()
