"""The `tvad` command.

    tvad pipeline --preset cpu --run-dir runs/cpu [--from NB] [--to NB] [--force] [-p key=value ...]
    tvad probe VIDEO          # frames, fps and size of a video file
    tvad config --preset cpu  # print the resolved configuration as YAML
"""

from __future__ import annotations

import argparse
import sys


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

    pr = sub.add_parser("probe", help="print a video's frame count, fps and size")
    pr.add_argument("video")

    cf = sub.add_parser("config", help="print a preset's resolved configuration")
    cf.add_argument("--preset", default="cpu")
    cf.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pipeline":
        from tvad.pipeline import main_pipeline

        args.run_dir = args.run_dir or f"runs/{args.preset}"
        return main_pipeline(args)
    if args.command == "probe":
        from tvad.data.video import VideoError, probe

        try:
            info = probe(args.video)
        except VideoError as e:
            print(f"tvad probe: error: {e}", file=sys.stderr)
            return 1
        print(f"{args.video}: {info.num_frames} frames, {info.fps:.3f} fps, {info.width}x{info.height}")
        return 0
    if args.command == "config":
        from tvad.config import preset
        from tvad.pipeline import PipelineError, parse_overrides

        try:
            print(preset(args.preset, parse_overrides(args.param)).to_yaml(), end="")
        except (KeyError, ValueError, PipelineError) as e:
            print(f"tvad config: error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
