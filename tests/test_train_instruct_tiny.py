"""The tiny backbone's instruction tuning: trains the decoder and the non-prompt embedding rows (ViT and the eq.-2
prompt tokens' rows bit-identical),
is deterministic, saves atomically and logs."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from tvad.model.backbone import from_pretrained
from tvad.train.instruct_tiny import InstructConfig, instruct, prompt_token_ids, save_weights, trainable_parameters


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tvad.data import synthetic
    from tvad.model.tiny import build_tiny

    d = tmp_path_factory.mktemp("instruct")
    nv = {s: 0 for s in synthetic.SPLITS}
    nv["pretrain"] = 6  # labels 1, 1, 1, 1, 0, 0: the balanced training pair is videos 0 and 4
    synthetic.generate(d / "data", num_videos=nv, seed=0, size=(112, 112), num_frames=8)
    videos = list(synthetic.load(d / "data", "pretrain"))
    bb = build_tiny(texts=["A person walks right."], vocab_size=400, seed=0, max_pixels=112 * 112,
                    depth=2, vision_hidden=32, fullatt_block_indexes=[1], text_hidden=32, text_layers=1)
    bb.save_pretrained(d / "asset")
    return d, videos


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _run(d, videos, name, **kw):
    asset = d / name
    shutil.copytree(d / "asset", asset)
    cfg = InstructConfig(asset=str(asset), train_videos=2, val_videos=1, steps=3, warmup=1, log_every=1,
                         work_dir=str(d / f"work-{name}"), **kw)
    return asset, instruct(cfg, log=lambda s: None, videos=videos)


def test_instruct_trains_decoder_only_and_is_deterministic(setup):
    d, videos = setup
    before = _state(d / "asset")
    a, summary = _run(d, videos, "a")
    b, _ = _run(d, videos, "b")
    sa, sb = _state(a), _state(b)
    assert set(sa) == set(before)
    frozen = [k for k in before if "visual" in k]
    assert frozen
    for k in frozen:
        assert torch.equal(sa[k], before[k]), f"{k} changed"
    # the embedding table: the eq.-2 prompt tokens' rows bit-identical (so are the AHD's text
    # features), the answer words' rows trained
    (ek,) = [k for k in before if "embed_tokens" in k]
    old_bb, new_bb = from_pretrained(d / "asset"), from_pretrained(a)
    tok = old_bb.tokenizer
    keep = prompt_token_ids(tok)
    assert torch.equal(sa[ek][keep], before[ek][keep])
    from tvad.prompts import class_prompts

    ab, nb = class_prompts("synthetic", k=8)  # stage 1's eq.-2 text features: bit-identical
    for prompts in (ab, nb):
        assert torch.equal(old_bb.text_features(prompts), new_bb.text_features(prompts))
    yes, no = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    assert yes not in keep.tolist() and no not in keep.tolist()
    moved = (sa[ek] != before[ek]).any(1).nonzero().flatten().tolist()
    assert moved and not set(moved) & set(keep.tolist()) and {yes, no} & set(moved)
    changed = [k for k in before if not torch.equal(sa[k], before[k])]
    assert all("language_model.layers" in k or "language_model.norm" in k or k.startswith("model.layers")
               or k.startswith("model.norm") or k == ek for k in changed), changed
    assert any("layers" in k for k in changed)
    assert summary["frozen_embedding_rows"] == len(keep)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"not deterministic: {k}"
    assert summary["steps"] == 3 and summary["before"]["loss"] > 0 and summary["after"]["loss"] > 0
    assert summary["trainable_params"] > 0 and summary["weights_bytes"] < 20 * 2**20
    rows = [json.loads(l) for l in (a / "instruct_log.jsonl").read_text().splitlines()]
    assert "config" in rows[0] and [r["step"] for r in rows[1:-1]] == [0, 1, 2] and "after" in rows[-1]
    assert json.loads((a / "instruct_summary.json").read_text())["steps"] == 3
    # the rest of the asset is untouched, and it reloads like any Qwen2.5-VL checkpoint
    assert (a / "config.json").read_text() == (d / "asset" / "config.json").read_text()
    from_pretrained(a)


def test_instruct_without_embed_rows_keeps_the_whole_table(setup):
    d, videos = setup
    before = _state(d / "asset")
    a, summary = _run(d, videos, "noemb", embed_rows=False)
    sa = _state(a)
    (ek,) = [k for k in before if "embed_tokens" in k]
    assert torch.equal(sa[ek], before[ek]) and summary["frozen_embedding_rows"] is None


def test_trainable_excludes_vit_and_embeddings_and_stale_save_refused(setup):
    d, _ = setup
    bb = from_pretrained(d / "asset")
    params = trainable_parameters(bb.model)
    ids = {id(p) for p in params.values()}
    assert id(bb.model.get_input_embeddings().weight) not in ids
    assert not ids & {id(p) for p in bb.model.model.visual.parameters()}
    assert any(".norm." in k for k in params) and any(".layers." in k for k in params)
    with pytest.raises(RuntimeError, match="changed while"):
        save_weights(bb, d / "asset", stamp=(0, 0))


def test_prompt_rows_cover_every_eq2_prompt_token_of_the_shipped_tokenizer():
    from tvad.io import REPO_ROOT
    from tvad.prompts import EVENTS, class_prompts

    tok = from_pretrained(REPO_ROOT / "assets" / "tiny-qwen2.5-vl").tokenizer
    keep = set(prompt_token_ids(tok).tolist())
    for ds in EVENTS:
        for k in (1, 8):
            for prompts in class_prompts(ds, k=k):
                ids = {i for p in prompts for i in tok(p)["input_ids"]}
                assert ids <= keep, (ds, k, tok.convert_ids_to_tokens(sorted(ids - keep)))
    yes, no = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    assert yes not in keep and no not in keep


def test_balanced_alternates_labels_and_refuses_one_class():
    from types import SimpleNamespace

    from tvad.train.instruct_tiny import balanced

    vids = [SimpleNamespace(name=f"v{i}", label=int(i % 4 != 0)) for i in range(12)]
    out = balanced(vids)  # 3 normal (v0, v4, v8) against 9 anomalous: three pairs
    assert [v.name for v in out] == ["v1", "v0", "v2", "v4", "v3", "v8"]
    assert [v.name for v in balanced(vids, 4)] == ["v1", "v0", "v2", "v4"]
    with pytest.raises(ValueError, match="0 normal"):
        balanced([v for v in vids if v.label])
