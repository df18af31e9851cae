"""`tvad plan` on the paper layouts' fixture trees: the checks pass on good input with the counts
notebook 01 really produces, each broken input is one problem line and a non-zero exit, and the 7B's
numbers (a 7B-shaped directory: its config, the real Qwen2.5 tokenizer, a sparse safetensors file)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.paper_fixtures import write_shanghaitech_tree, write_ubnormal_tree
from tests.plan_fixtures import copy_model_dir, write_shaped_checkpoint
from tvad.cli import main
from tvad.config import preset
from tvad.data.protocol import build_index, load_clips
from tvad.io import resolve_model_path
from tvad.model.backbone import count_parameters, from_pretrained, qwen25vl_7b_config
from tvad.plan import make_plan
from tvad.train.features import predicted_cache_bytes

TINY = resolve_model_path("assets/tiny-qwen2.5-vl")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan_trees")
    return write_ubnormal_tree(d / "ubnormal").root, write_shanghaitech_tree(d / "shanghaitech").root


def overrides(trees, model=TINY) -> dict:
    return {"backbone.path": str(model), "data.root": str(trees[0]), "data.shanghaitech_root": str(trees[1])}


def run_cli(capsys, trees, model=TINY, extra=()) -> tuple[int, list[str], str]:
    """(exit code, the "problem:" lines, all of stdout) of `tvad plan --preset paper` on the fixtures."""
    args = ["plan", "--preset", "paper"] + [a for k, v in overrides(trees, model).items() for a in ("-p", f"{k}={v}")]
    rc = main(args + list(extra))
    out = capsys.readouterr().out
    return rc, [l for l in out.splitlines() if l.startswith("problem: ")], out


def test_plan_passes_with_the_counts_build_index_produces(trees):
    cfg = preset("paper", overrides(trees))
    plan = make_plan(cfg)
    assert plan.problems == [], plan.problems
    index = build_index(cfg.data, seed=cfg.seed)
    want = Counter((c.source, c.split) for c in index.clips)
    got = Counter({(ds, sp): n for ds, splits in plan.clips.items() for sp, n in splits.items()})
    assert got == want and sum(want.values()) > 0
    frames = Counter()
    for c in index.clips:
        frames[(c.source, c.split)] += c.num_frames
    assert {(ds, sp): n for ds, s in plan.frames.items() for sp, n in s.items()} == dict(frames)
    assert any("shorter than the shortest clip" in n for n in plan.notes)  # the fixture's 6-second video: a note, not a problem
    # the feature cache: what notebook 02's own prediction says for the same clips (real backbone, ClipVideos)
    bb = from_pretrained(TINY, max_pixels=cfg.backbone.max_pixels)
    videos = [v for sp in ("train", "validation", "test") for v in load_clips(index, cfg.data, sp, "ubnormal")]
    real = predicted_cache_bytes(videos, bb, bb.resolve_layers(cfg.backbone.layers), detail=True)
    feats = next(s for s in plan.stages if s.name == "features")
    assert real["features"] + real["masks"] <= feats.disk <= real["total"] * 1.01
    # the longest sequence: an estimate without a corpus, over the training clips, against max_length
    seq = plan.sequence
    assert seq["source"] == "estimate" and seq["max_length"] == cfg.stage2.max_length
    assert seq["tokens"] == seq["video"] + seq["prompts"] + seq["text"]
    assert seq["video"] <= cfg.stage2.video_max_tokens
    names = {s.name for s in plan.stages}
    assert {"features", "stage1", "stage2 rae a", "stage2 rae b", "stage2 no_rae a", "answers"} <= names
    for s in plan.stages:
        assert s.peak > 0 and s.flops >= 0 and s.seconds >= 0, s


def test_cli_exits_zero_and_prints_the_table(trees, capsys):
    rc, problems, out = run_cli(capsys, trees)
    assert rc == 0 and problems == [] and "no problems" in out
    assert "clips      ubnormal:" in out and "stage2 rae a" in out
    rc = main(["plan", "--preset", "paper", "--json"] + [a for k, v in overrides(trees).items()
                                                         for a in ("-p", f"{k}={v}")])
    rec = json.loads(capsys.readouterr().out)
    assert rc == 0 and rec["problems"] == [] and rec["totals"]["peak_bytes"] > 0


def test_model_dir_without_weights(trees, tmp_path, capsys):
    d = copy_model_dir(TINY, tmp_path / "m")
    (d / "model.safetensors").unlink()
    rc, problems, _ = run_cli(capsys, trees, d)
    assert rc == 1 and len(problems) == 1 and "no safetensors weights" in problems[0] and str(d) in problems[0]


def test_model_dir_with_truncated_or_other_weights(trees, tmp_path, capsys):
    d = copy_model_dir(TINY, tmp_path / "m")
    w = d / "model.safetensors"
    with open(w, "r+b") as fh:
        fh.truncate(w.stat().st_size // 2)
    rc, problems, _ = run_cli(capsys, trees, d)
    assert rc == 1 and len(problems) == 1 and "truncated" in problems[0] and str(w) in problems[0]
    cfg = json.loads((d / "config.json").read_text())  # weights of a config with a wider decoder MLP
    cfg["text_config"]["intermediate_size"] += 64
    (d / "config.json").write_text(json.dumps(cfg))
    shutil.copy(TINY / "model.safetensors", w)
    rc, problems, _ = run_cli(capsys, trees, d)
    assert rc == 1 and len(problems) == 1 and "parameters" in problems[0] and "missing" in problems[0]


def test_model_dir_with_another_tokenizer(trees, tmp_path, capsys):
    """The real Qwen2.5 tokenizer beside the tiny config: every special id is elsewhere (151652.. vs ~800)."""
    from tvad.model.widths import qwen25_tokenizer

    d = copy_model_dir(TINY, tmp_path / "m")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).unlink()
    tok = qwen25_tokenizer(tmp_path / "tok")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / f, d / f)
    rc, problems, _ = run_cli(capsys, trees, d)
    assert rc == 1 and len(problems) == 1, problems  # one line naming the four special tokens and the eos
    cfg = json.loads((TINY / "config.json").read_text())  # the ids the tiny asset's own tokenizer gives
    for token, want in (("<|vision_start|>", cfg["vision_start_token_id"]), ("<|vision_end|>", cfg["vision_end_token_id"]),
                        ("<|video_pad|>", cfg["video_token_id"]), ("<|image_pad|>", cfg["image_token_id"]),
                        ("eos", cfg["text_config"]["eos_token_id"])):
        assert f"{token} " in problems[0] and f" {want})" in problems[0], (token, problems)
    assert "another model" in problems[0] and str(d) in problems[0]


def test_model_dir_without_processor(trees, tmp_path, capsys):
    d = copy_model_dir(TINY, tmp_path / "m")
    (d / "processor_config.json").unlink()
    rc, problems, _ = run_cli(capsys, trees, d)
    assert rc == 1 and len(problems) == 1 and "no processor config" in problems[0]


def test_dataset_missing_a_split_file(trees, tmp_path, capsys):
    ub = tmp_path / "ubnormal"
    shutil.copytree(trees[0], ub)
    missing = ub / "scripts" / "normal_test_video_names.txt"
    missing.unlink()
    rc, problems, _ = run_cli(capsys, (ub, trees[1]))
    assert rc == 1 and len(problems) == 1 and str(missing) in problems[0] and "missing split file" in problems[0]


def test_missing_model_and_bad_override(trees, tmp_path, capsys):
    rc, problems, _ = run_cli(capsys, trees, tmp_path / "nowhere")
    assert rc == 1 and len(problems) == 1 and "not a local directory" in problems[0]
    assert main(["plan", "--preset", "paper", "-p", "stage2.no_such_key=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tvad plan: error:") and len(err.strip().splitlines()) == 1


def test_the_7b_numbers(trees, tmp_path):
    """The paper preset on a directory with the 7B's config, real tokenizer and processor, and a sparse
    safetensors file of its state dict: no problem, the 7B's parameter count, bf16 weights memory."""
    cfg7 = qwen25vl_7b_config()
    d = write_shaped_checkpoint(tmp_path / "qwen7b", cfg7)
    plan = make_plan(preset("paper", overrides(trees, d)))
    assert plan.problems == [], plan.problems
    with torch.device("meta"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        real = count_parameters(Qwen2_5_VLForConditionalGeneration._from_config(cfg7))
    assert plan.model.params == real and plan.model.weight_numel == real["total"]
    with open(d / "model.safetensors", "rb") as fh:
        header = 8 + int.from_bytes(fh.read(8), "little")
    assert plan.model.weight_bytes == 2 * real["total"] == (d / "model.safetensors").stat().st_size - header
    for s in plan.stages:
        assert s.memory["weights"] == plan.model.weight_bytes
    s2 = next(s for s in plan.stages if s.name == "stage2 rae a")
    assert s2.peak < 80 * 2**30  # one 80 GB GPU holds a stage-2 step at the paper's settings
    assert plan.sequence["tokens"] <= plan.sequence["max_length"]
    # benchmarks/plan_paper.py on the same directory: the paper-scale prediction docs/plan.md prints
    import importlib.util

    spec = importlib.util.spec_from_file_location("plan_paper", REPO / "benchmarks" / "plan_paper.py")
    pp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pp)
    rec = pp.main(["--model", str(d), "--out", str(tmp_path / "p.json")])
    assert rec["problems"] == [] and json.loads((tmp_path / "p.json").read_text())["totals"] == rec["totals"]
    want = Counter()
    for src, split, n, _ in pp.PAPER_CLIPS:
        want[(src, split)] += n
    assert {(ds, sp): n for ds, s in rec["clips"].items() for sp, n in s.items()} == dict(want)
    assert rec["totals"]["peak_bytes"] < 80 * 2**30 and rec["totals"]["seconds"] > 0


def test_longest_sequence_from_a_corpus(trees, tmp_path):
    """With a run's corpus the length is measured: text + prompt block + the clip's video tokens under the
    budget, as the collator encodes the dialogue; a dialogue that leaves no room for the video is a problem."""
    from tests.stage2_fixtures import TRAIN
    from tvad.model.tvad import encode_dialogue
    from tvad.plan import _tokenizer
    from tvad.plan.checks import check_model
    from tvad.plan.estimate import Shapes, longest_sequence

    cfg = preset("paper", overrides(trees))
    info, problems = check_model(cfg.backbone.path)
    assert problems == []
    shape, tok = Shapes(info, cfg), _tokenizer(info.path)
    recs = [json.loads(json.dumps(r)) for r in TRAIN]
    recs[1]["messages"][-1]["content"] = "It walks along the path, then it runs. " * 20  # the longest
    seq = longest_sequence(shape, cfg, [], recs, tok)
    assert seq["source"] == "corpus" and seq["problems"] == [] and seq["clip"] == recs[1]["clip"]["name"]
    c = recs[1]["clip"]
    video = shape.video_tokens(c["num_frames"], *c["size"])
    enc = encode_dialogue(tok, recs[1]["messages"], video, seq["prompts"], int(info.config.video_token_id))
    assert seq["tokens"] == enc.input_ids.numel() and seq["video"] == video
    cfg.stage2.max_length = seq["text"] + seq["prompts"]  # no room left for the video
    bad = longest_sequence(shape, cfg, [], recs, tok)
    assert len(bad["problems"]) == 1 and repr(recs[1]["id"]) in bad["problems"][0]


def test_run_dir_corpus_sets_lengths_and_dialogue_counts(trees, tmp_path, capsys):
    """`--run-dir` with notebook 01's corpora: the sequence is measured ("corpus") and stage 2's dialogue
    counts are the corpus files' line counts; a run dir without them keeps the estimate, with a note."""
    from tests.stage2_fixtures import TRAIN

    corpus = tmp_path / "run" / "corpus"
    corpus.mkdir(parents=True)
    for ph, n in (("a", 3), ("b", 2)):
        (corpus / f"phase_{ph}.train.jsonl").write_text("".join(json.dumps({**r, "phase": ph, "id": f"{ph}/train/{i}"})
                                                                + "\n" for i, r in enumerate(TRAIN[:n])))
    plan = make_plan(preset("paper", overrides(trees)), run_dir=tmp_path / "run")
    assert plan.problems == [] and plan.sequence["source"] == "corpus"
    assert [s.what.split()[0] for s in plan.stages if s.name.startswith("stage2 rae ")] == ["3", "2"]
    rc, problems, out = run_cli(capsys, trees, extra=["--run-dir", str(tmp_path / "empty")])
    assert rc == 0 and problems == [] and "no corpus yet" in out and "(estimate:" in out


def test_config_the_checkpoint_cannot_serve(trees, capsys):
    """ViT blocks beyond the tiny asset's 4, or a video budget below one token per temporal patch of a
    40-frame clip: one problem line each, no traceback."""
    rc, problems, _ = run_cli(capsys, trees, extra=["-p", "backbone.layers=[0, 9]"])
    assert rc == 1 and len(problems) == 1 and "9" in problems[0] and "backbone" in problems[0]
    rc, problems, _ = run_cli(capsys, trees, extra=["-p", "stage2.video_max_tokens=8"])
    assert rc == 1 and len(problems) == 1 and "video_max_tokens" in problems[0]
