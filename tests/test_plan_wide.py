"""`tvad plan` on the 7B-wide checkpoint (`tvad.model.widths.write_wide_checkpoint`: random weights at the
7B's widths, 2 decoder layers, the real tokenizer and processor, ~4.5 GB written once): the plan passes,
its parameter count is the checkpoint's, and its predicted weights memory is the safetensors tensor
bytes. Writing it builds a model at the 7B's widths, so it holds /tmp/tvad-wide.lock (one such process
on the machine at a time)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fcntl
import math

import pytest
import torch

from tests.paper_fixtures import write_shanghaitech_tree, write_ubnormal_tree
from tvad.config import preset
from tvad.model.flops import parameter_counts
from tvad.model.widths import wide_config, write_wide_checkpoint
from tvad.plan import make_plan
from tvad.plan.checks import safetensors_header

LOCK = "/tmp/tvad-wide.lock"


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan_wide")
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            return write_wide_checkpoint(d / "wide", decoder_layers=2, dtype=torch.bfloat16, seed=0)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def test_plan_on_the_wide_checkpoint(wide, tmp_path):
    ub, st = write_ubnormal_tree(tmp_path / "ub").root, write_shanghaitech_tree(tmp_path / "st").root
    plan = make_plan(preset("paper", {"backbone.path": str(wide), "data.root": str(ub),
                                      "data.shanghaitech_root": str(st)}))
    assert plan.problems == [], plan.problems
    files = sorted(wide.glob("*.safetensors"))
    headers = [safetensors_header(f) for f in files]
    numel = sum(math.prod(v["shape"]) for h in headers for k, v in h.items() if k != "__metadata__")
    tensor_bytes = sum(f.stat().st_size - 8 - int.from_bytes(open(f, "rb").read(8), "little") for f in files)
    assert plan.model.params == parameter_counts(wide_config(2)) and plan.model.weight_numel == numel
    assert plan.model.params["total"] == numel  # the untied lm_head included
    assert plan.model.weight_bytes == tensor_bytes == 2 * numel  # bf16
    for s in plan.stages:
        assert s.memory["weights"] == tensor_bytes, s.name
    assert plan.model.weight_dtypes == {"BF16": numel}
