"""The benchmark scripts run (in their smallest modes, on the CPU) so that they cannot rot.

Each runs in-process through its `main(argv)` with `--out` in a temporary directory (the recorded
results under benchmarks/results are never overwritten by the tests). Numbers are not checked
against targets here (the machine is shared): only that every section ran and the record has the
shape docs/benchmarks.md quotes. About 30-60 s in all on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """`--threads 1` sets torch's thread count process-wide: give the other tests theirs back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_common_stats_and_emit(tmp_path, capsys):
    common = load("common")
    st = common.stats([1.0, 2.0, 3.0])
    assert st == {"median": 2.0, "min": 1.0, "max": 3.0, "spread": 1.0, "repeats": 3}
    assert common.rate(st, 10) == {"median": 5.0, "min": 3.33, "max": 10.0}
    rec = common.emit({"x": 1}, "demo", tmp_path / "demo.json")
    assert json.loads((tmp_path / "demo.json").read_text()) == rec == {"benchmark": "demo", "x": 1}
    assert {"cpu", "cores"} <= set(common.machine())


def test_vit_flops_match_the_7b_floor():
    """The analytical count gives METHOD.md's 2.82 TFLOP per 2-frame group at 476 x 868."""
    g = load("gpu_real_size")
    vcfg = g.model_config(False).vision_config
    f = g.vit_flops(vcfg, 1, 34, 62)
    assert f["patches_per_group"] == 2108 and f["windows_per_group"] == 40
    assert 2.80e12 < f["total"] < 2.84e12
    assert g.vit_flops(vcfg, 8, 34, 62)["total"] == pytest.approx(8 * f["total"], rel=1e-9)
    assert g.chosen_blocks(vcfg) == [0, 7, 15, 23, 31]


def test_gpu_real_size_small_runs_on_cpu(tmp_path, capsys):
    g = load("gpu_real_size")
    rec = g.main(["--small", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "g.json")])
    assert json.loads((tmp_path / "g.json").read_text())["small"] is True
    assert not rec["skipped"]
    for section in ("vit", "ahd", "stage1", "stage2", "attention"):
        assert section in rec and "error" not in rec[section], section
    assert rec["vit"]["blocks"] == [0, 1, 3]
    for r in rec["vit"]["per_groups"].values():
        assert r["ms_per_group"] > 0 and 0 < r["fraction_of_peak"]
    assert rec["ahd"]["detect_end_to_end"]["frames_per_s"] > 0
    for mode in ("embeds", "pixels"):
        assert rec["stage2"][mode]["loss_finite"] and rec["stage2"][mode]["tokens_per_s"] > 0
    assert rec["stage2"]["lora_modules"] == 2 * 2  # q_proj, v_proj of both decoder layers
    assert rec["attention"]["eager"]["max_abs_diff_vs_sdpa"] < 1e-3
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].strip().startswith("wall time")  # the table comes last


def test_decode_tiny(tmp_path):
    d = load("decode")
    rec = d.main(["--tiny", "--out", str(tmp_path / "d.json")])
    (name, v), = rec["videos"].items()
    for m in ("sequential_threads1", "random", "read_frames_all", "read_frames_fps1", "pyav_sequential"):
        assert v[m]["frames_per_s"]["median"] > 0, m
    assert "vit_7b_868x476_floor" in rec["consumption"]


def test_stage2_tiny(tmp_path):
    s = load("stage2")
    rec = s.main(["--tiny", "--threads", "1", "--out", str(tmp_path / "s.json")])
    loop = rec["loop"]["embeds"]
    assert loop["tokens_per_s"]["median"] > 0 and 0 < loop["collate_share"] < 1
    assert rec["train_phase"]["optimizer_steps"] >= 1 and math.isfinite(rec["train_phase"]["tokens_per_s"])


def test_feature_cache_tiny(tmp_path):
    """Two fresh child processes (1x and 4x one tiny video); the record has both peaks and the
    predicted cache size equals the size on disk."""
    f = load("feature_cache")
    rec = f.main(["--videos", "1", "--frames", "4", "--size", "56", "--no-eager", "--out", str(tmp_path / "f.json")])
    assert json.loads((tmp_path / "f.json").read_text())["benchmark"] == "feature_cache"
    assert set(rec["runs"]) == {"1x", "4x"} and {"cpu", "cores"} <= set(rec["machine"])
    assert rec["runs"]["1x"]["videos"] == 1 and rec["runs"]["4x"]["videos"] == 4
    assert rec["runs"]["4x"]["feature_misses"] == 4 and rec["runs"]["4x"]["kept_samples"] == 0
    for k in ("1x", "4x"):
        assert rec["peak_rss_mib"][k] > 0
        assert rec["cache_bytes"][k]["predicted"] == rec["cache_bytes"][k]["actual"] > 0
    assert rec["cache_bytes"]["4x"]["actual"] > 3 * rec["cache_bytes"]["1x"]["actual"]
    assert isinstance(rec["flat"], bool) and rec["peak_rss_ratio_4x_over_1x"] > 0


def test_compare_runs_counts_what_moved_and_skips_timings(tmp_path):
    cr = load("compare_runs")
    for name, auc, t, extra in (("a", 0.55, 10.0, {}), ("b", 0.56, 99.0, {"ahd.test.rbdc": 0.3})):
        (tmp_path / name / "results").mkdir(parents=True)
        (tmp_path / name / "results" / "02_ahd_training.json").write_text(json.dumps(
            {"ahd.test.micro_auc": auc, "ahd.val.micro_auc": math.nan, "timing.epoch_cached_s": t,
             "stage1.backbone": name, "stage1.cache_bytes": 7, **extra}))
    r = cr.compare(tmp_path / "a", tmp_path / "b")
    assert (r["compared"], r["differ"], r["missing"]) == (3, 1, ["02_ahd_training:ahd.test.rbdc"])
    delta, stem, key, u, v = r["diffs"][0]
    assert (stem, key, u, v) == ("02_ahd_training", "ahd.test.micro_auc", 0.55, 0.56) and delta == pytest.approx(0.01)
