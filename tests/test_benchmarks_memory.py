"""benchmarks/memory_paper_widths.py runs (on the tiny backbone, its test mode) so that it cannot rot:
every notebook stage reports its peak RSS and disk, stage 2 writes delta checkpoints for each trained
variant. Numbers are not checked against the target here (the machine is shared; docs/paper-memory.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def test_memory_paper_widths_tiny(tmp_path, capsys):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_memory_paper_widths", BENCH / "memory_paper_widths.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rec = mod.main(["--tiny", "--work", str(tmp_path / "run"), "--out", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text()) == rec
    assert set(rec["stages"]) == {"stage1", "stage2", "eval"}
    for s in rec["stages"].values():
        assert s["peak_rss_gb"] > 0 and s["on_disk_gb"] >= 0
    cks = rec["stages"]["stage2"]["checkpoints"]
    assert set(cks) == {f"{v}/phase_{p}/final" for v in ("rae", "no_rae", "rae_oracle") for p in "ab"}
    for ck in cks:  # every phase saved as a delta of the tiny backbone
        j = json.loads((tmp_path / "run" / "run" / "stage2" / ck / "tvad.json").read_text())
        assert j["backbone_storage"]["storage"] == "delta"
    assert {"limit_gb", "peak_rss_gb", "met"} <= set(rec["target"])
