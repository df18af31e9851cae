"""Bad inputs to the real `tvad detect` / `tvad chat` commands (issue 20, items 6 and 7): each one is
an exit code 1 and a one-line error (its first line asserted), and the argument errors come before
any model loads (the checkpoint is never read, the output folder never made)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tvad(*argv: str, timeout: int = 300) -> tuple[int, str, str]:
    """Run `python -m tvad.cli ARGV` in a subprocess: (exit code, first line of stderr, all stderr)."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-m", "tvad.cli", *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=REPO)
    err = r.stderr.strip()
    return r.returncode, (err.splitlines() or [""])[0], err


def one_line(rc: int, first: str, err: str, expected: str) -> None:
    assert rc == 1, err
    assert first == expected, err
    assert "Traceback" not in err and "\n" not in err, err


@pytest.fixture(scope="module")
def ckpt(tiny_stage1_run):
    return tiny_stage1_run[0] / "run"


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory):
    """A real 6-frame, 8 fps mp4 (64 x 64)."""
    from tvad.data.video import write_video

    p = tmp_path_factory.mktemp("video") / "small.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    return write_video(p, frames, fps=8.0)


def detect(video, ckpt, out, *more):
    return tvad("detect", video, "--checkpoint", ckpt, "--out", out, "--quiet", *more)


@pytest.mark.parametrize("fps", ["nan", "inf", "-inf", "0", "-2"])
def test_detect_fps_not_a_positive_finite_number(fps, bikes_mp4, tmp_path):
    rc, first, err = detect(bikes_mp4, tmp_path / "no-checkpoint", tmp_path / "out", f"--fps={fps}")
    one_line(rc, first, err, f"tvad detect: error: --fps must be a finite number > 0, got {float(fps)}")
    assert not (tmp_path / "out").exists()


def test_detect_fps_above_the_videos_own_rate(bikes_mp4, ckpt, tmp_path):
    rc, first, err = detect(bikes_mp4, ckpt, tmp_path / "out", "--fps", "1000")
    one_line(rc, first, err, "tvad detect: error: --fps 1000 is above the video's own rate (25 fps): it would "
                             "repeat frames; use at most 25, or leave --fps out to keep every frame")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("threshold", ["nan", "inf", "1.5", "0"])
def test_detect_threshold_outside_0_1(threshold, bikes_mp4, ckpt, tmp_path):
    rc, first, err = detect(bikes_mp4, ckpt, tmp_path / "out", "--threshold", threshold)
    one_line(rc, first, err, f"tvad detect: error: --threshold must be in (0, 1), got {float(threshold)}")


def test_detect_device_bogus(bikes_mp4, ckpt, tmp_path):
    rc, first, err = detect(bikes_mp4, ckpt, tmp_path / "out", "--device", "bogus")
    one_line(rc, first, err, "tvad detect: error: --device bogus: not a device (use cpu, cuda, cuda:N, mps or auto)")


def test_detect_device_of_an_unsupported_type(bikes_mp4, ckpt, tmp_path):
    rc, first, err = detect(bikes_mp4, ckpt, tmp_path / "out", "--device", "meta")
    one_line(rc, first, err, "tvad detect: error: --device meta: unsupported device type 'meta' "
                             "(use cpu, cuda, cuda:N, mps or auto)")


def test_detect_device_cuda_without_a_gpu(bikes_mp4, ckpt, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    rc, first, err = detect(bikes_mp4, ckpt, tmp_path / "out", "--device", "cuda")
    one_line(rc, first, err, "tvad detect: error: --device cuda: no CUDA GPU is available here (use --device cpu)")


def test_detect_out_is_an_existing_file(bikes_mp4, ckpt, tmp_path):
    f = tmp_path / "taken.txt"
    f.write_text("not a folder")
    rc, first, err = detect(bikes_mp4, ckpt, f)
    one_line(rc, first, err, f"tvad detect: error: --out {f}: exists and is not a directory")
    assert f.read_text() == "not a folder"


def test_detect_out_below_a_file(bikes_mp4, ckpt, tmp_path):
    f = tmp_path / "taken.txt"
    f.write_text("x")
    rc, first, err = detect(bikes_mp4, ckpt, f / "sub")
    one_line(rc, first, err, f"tvad detect: error: --out {f / 'sub'}: {f} is a file, not a directory")


def test_detect_checkpoint_is_a_file(bikes_mp4, tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\0" * 8)
    rc, first, err = detect(bikes_mp4, f, tmp_path / "out")
    one_line(rc, first, err, f"tvad detect: error: checkpoint {f}: not a directory "
                             "(pass a checkpoint or run directory)")


def test_detect_parent_folder_with_two_runs_lists_them(small_mp4, ckpt, tmp_path):
    parent = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(ckpt, parent / name)
    rc, first, err = detect(small_mp4, parent, tmp_path / "out")
    one_line(rc, first, err, f"tvad detect: error: cannot load checkpoint {parent}: {parent}: holds 2 AHD "
                             f"checkpoints, pass one of them (or its run directory): "
                             f"{parent / 'a' / 'stage1' / 'best'}, {parent / 'b' / 'stage1' / 'best'}")
    assert not (tmp_path / "out").exists()


def test_detect_parent_folder_with_one_run_still_finds_it(small_mp4, ckpt, tmp_path):
    parent = tmp_path / "runs"
    shutil.copytree(ckpt, parent / "only")
    rc, first, err = detect(small_mp4, parent, tmp_path / "out", "--no-video")
    assert rc == 0, err
    assert (tmp_path / "out" / "small_scores.csv").exists()


def test_chat_video_is_a_directory(ckpt, tmp_path):
    rc, first, err = tvad("chat", tmp_path, "--checkpoint", ckpt, "-q", "Is there any anomaly?")
    one_line(rc, first, err, f"tvad chat: error: {tmp_path}: is a directory, not a video file")


def test_chat_device_bogus(small_mp4, ckpt):
    rc, first, err = tvad("chat", small_mp4, "--checkpoint", ckpt, "--device", "bogus", "-q", "Why?")
    one_line(rc, first, err, "tvad chat: error: --device bogus: not a device (use cpu, cuda, cuda:N, mps or auto)")


def test_chat_max_new_tokens_zero(small_mp4, ckpt):
    rc, first, err = tvad("chat", small_mp4, "--checkpoint", ckpt, "--max-new-tokens", "0", "-q", "Why?")
    one_line(rc, first, err, "tvad chat: error: --max-new-tokens must be >= 1, got 0")


def test_chat_question_too_long(small_mp4, ckpt):
    q = " ".join(["word"] * 20_000)
    rc, first, err = tvad("chat", small_mp4, "--checkpoint", ckpt, "--max-new-tokens", "2", "-q", q)
    one_line(rc, first, err, f"tvad chat: error: the question is {len(q):,} characters long; the limit is 2,000")
