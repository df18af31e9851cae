"""Stage 2 on a tiny model and a tiny corpus: collator, SFTTrainer phases A -> merge -> B -> merge,
LoRA placement, resume after a kill, self-contained checkpoints with identical logits, evaluation."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.config import AHDConfig, RAEConfig, Stage2Config
from tvad.corpus import validate_record
from tvad.data.record import Video
from tvad.model.tiny import build_tiny
from tvad.model import build_ahd, load, save_model
from tvad.model.tvad import HEATMAP_KWARG, VIDEO_EMBEDS_KWARG, TVAD
from tvad.train import stage2

LAYERS = [0, 3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _records(n: int, split: str = "train", phase: str = "b") -> tuple[list[dict], dict]:
    rng = np.random.default_rng({"train": 0, "val": 1}[split])
    arrays, recs = {}, []
    for i in range(n):
        name = f"{split}{i}"
        f = rng.integers(0, 60, (4, 112, 112, 3), dtype=np.uint8)
        ab = i % 2 == 0
        if ab:  # a bright moving square: the "anomaly"
            for t in range(4):
                f[t, 30:60, 10 + 20 * t:40 + 20 * t] = 250
        arrays[name] = f
        msgs = [{"role": "system", "content": "You watch a fixed camera."},
                {"role": "user", "content": "Is there any anomaly in this video?"},
                {"role": "assistant", "content": "Yes." if ab else "No."},
                {"role": "user", "content": "How does it move?"},
                {"role": "assistant",
                 "content": "It moves right quickly." if ab else "Nothing moves in this scene at all."}]
        r = {"schema": "tvad.corpus/v1", "id": f"{phase}/{split}/{name}", "phase": phase, "split": split,
             "clip": {"name": name, "source_video": name, "frame_indices": [0, 1, 2, 3], "num_frames": 4,
                      "fps": 8.0, "size": [112, 112], "label": int(ab), "path": ""},
             "messages": msgs,
             "turns": [{"type": "yes_no", "kind": "judgement", "references": [msgs[2]["content"]],
                        "truth": "yes" if ab else "no"},
                       {"type": "trajectory", "kind": "trajectory", "references": [msgs[4]["content"]]}],
             "targets": [], "annotator": "oracle"}
        assert validate_record(r) == [], validate_record(r)
        recs.append(r)
    return recs, arrays


TRAIN, ARR_T = _records(4, "train")
VAL, ARR_V = _records(2, "val")
ARRAYS = {**ARR_T, **ARR_V}
CFG = Stage2Config(lr=2e-3, grad_accum=1, epochs=1.0, eval_steps=2, max_length=512, phase_b_last_layers=1)


def _model(use_rae: bool = True, video_max_tokens: int | None = None) -> TVAD:
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    ahd = build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0)
    return TVAD.build(bb, ahd, {"backbone": {"layers": LAYERS, "identity": bb.identity}}, RAEConfig(channels=8),
                      use_rae=use_rae, seed=0, meta={"fps": 8.0, "video_max_tokens": video_max_tokens})


def _store(model, root=None):
    return stage2.ClipStore(model, stage2.ClipResolver(arrays=ARRAYS), root)


def _sd(m: TVAD) -> dict:
    return {k: v.detach().clone() for k, v in m.qwen.state_dict().items() if "anomaly_injector" not in k}


def _changed(a: dict, b: dict, m: TVAD) -> set:
    """Keys whose weights differ, the embedding / tied head counted only outside the prompt-token rows."""
    out = set()
    prompt = sorted(m.token_ids.values())
    for k in a:
        if torch.equal(a[k], b[k]):
            continue
        if k.endswith("embed_tokens.weight") or k == "lm_head.weight":
            keep = torch.ones(a[k].shape[0], dtype=torch.bool)
            keep[prompt] = False
            if torch.equal(a[k][keep], b[k][keep]):
                continue
        out.add(k)
    return out


def test_collator_masks_pads_and_hands_over_evidence():
    m = _model()
    store = _store(m)
    col = stage2.Collator(m, TRAIN, store, max_length=512)
    b = col([{"idx": 0}, {"idx": 1}])
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape == b["mm_token_type_ids"].shape
    assert b["video_grid_thw"].shape == (2, 3) and b["second_per_grid_ts"].tolist() == [0.25, 0.25]
    assert len(b[HEATMAP_KWARG]) == 2 and b[HEATMAP_KWARG][0].shape == (2, 8, 8)
    assert len(b[VIDEO_EMBEDS_KWARG]) == 2 and "pixel_values_videos" not in b
    tok = m.tokenizer
    for i, ans in enumerate(["Yes.<|im_end|>It moves right quickly.<|im_end|>",
                             "No.<|im_end|>Nothing moves in this scene at all.<|im_end|>"]):
        lab = b["labels"][i]
        assert tok.decode(lab[lab != -100]) == ans
    assert (b["labels"][b["attention_mask"] == 0] == -100).all()
    assert int(b["attention_mask"][0].sum()) < int(b["attention_mask"][1].sum())  # padded to the longest
    # the frozen ViT every step ("pixels") and the cached merged tokens ("embeds") give the same loss
    m.set_trainable(False)
    colp = stage2.Collator(m, TRAIN, _store(m), max_length=512, video_input="pixels")
    bp = colp([{"idx": 0}, {"idx": 1}])
    assert "pixel_values_videos" in bp and VIDEO_EMBEDS_KWARG not in bp
    with torch.no_grad():
        le = m.qwen(**b).loss
        lp = m.qwen(**bp).loss
    assert torch.allclose(le, lp, atol=1e-5)
    # a record whose clip is gone: a clear error naming it
    gone = dict(TRAIN[0], id="b/train/gone", clip=dict(TRAIN[0]["clip"], name="gone", source_video="gone",
                                                         path="/nonexistent/gone.mp4"))
    with pytest.raises(stage2.ClipMissing, match="b/train/gone.*gone"):
        stage2.check_clips([gone], store)


def test_phases_merge_resume_reload(tmp_path):
    m = _model()
    store = _store(m, tmp_path / "clips")
    before = _sd(m)
    rae0 = {k: v.clone() for k, v in m.rae.state_dict().items()}
    rows0 = m.injector.token_rows.detach().clone()
    ra = stage2.train_phase(m, "a", TRAIN, VAL, store, CFG, tmp_path / "a", progress=False, log=lambda s: None)
    after_a = _sd(m)
    assert ra.steps == 4 and ra.best_checkpoint is not None and (ra.final_dir / "tvad.json").exists()
    assert any("eval_loss" in h for h in ra.history) and any("loss" in h for h in ra.history)
    changed = _changed(before, after_a, m)
    assert changed and all("language_model" in k and ("q_proj" in k or "v_proj" in k) for k in changed), changed
    assert {k.split(".layers.")[1].split(".")[0] for k in changed} == {"0", "1"}  # phase A: every layer
    assert not any("lora" in k for k in after_a)  # merged: plain Qwen weights
    assert any(not torch.equal(rae0[k], v) for k, v in m.rae.state_dict().items())  # the RAE trained
    assert not torch.equal(rows0[[0, 2]], m.injector.token_rows.detach()[[0, 2]])  # open/close rows trained
    rb = stage2.train_phase(m, "b", TRAIN, VAL, store, CFG, tmp_path / "b", progress=False, log=lambda s: None)
    after_b = _sd(m)
    changed_b = _changed(after_a, after_b, m)
    assert changed_b and {k.split(".layers.")[1].split(".")[0] for k in changed_b} == {"1"}  # last layer only
    assert all("q_proj" in k or "v_proj" in k for k in changed_b)
    assert all(torch.equal(before[k], after_b[k]) for k in before if ".visual." in k)  # never the ViT
    assert m.meta["lora"]["phases"] == [None, [1]] and m.parameter_counts()["lora"] > 0
    # the self-contained checkpoint restores identical logits
    m2 = load(rb.final_dir)
    c = store.get(VAL[0]["clip"])
    with torch.no_grad():
        a = m.forward(VAL[0]["messages"], c).logits
        b = m2.forward(VAL[0]["messages"], m2.encode_clip(ARRAYS["val0"], 8.0)).logits
    assert torch.equal(a, b)
    assert load(tmp_path / "b" / "final").meta["phase"] == "b"
    metrics, preds = stage2.evaluate_dialogues(m2, VAL, store, max_new_tokens=4)
    assert {"yes_no_accuracy", "yes_no_balanced_accuracy", "bleu4_trajectory"} <= set(metrics)
    assert len(preds) == 4 and all(isinstance(p["answer"], str) for p in preds)


def test_yes_no_weight_weights_the_answer_word_only_and_one_is_the_plain_loss():
    m = _model()
    m.set_trainable(False)
    store = _store(m)
    plain = stage2.Collator(m, TRAIN, store, max_length=512)([{"idx": 0}, {"idx": 1}])
    assert stage2.TOKEN_WEIGHTS not in plain  # the paper's loss: TRL's own token mean
    b = stage2.Collator(m, TRAIN, store, max_length=512, yes_no_weight=5.0)([{"idx": 0}, {"idx": 1}])
    w = b.pop(stage2.TOKEN_WEIGHTS)
    tok = m.tokenizer
    for i, word in enumerate(["Yes", "No"]):  # the judgement turn is yes/no, the trajectory turn is not
        up = (w[i] != 1).nonzero().flatten().tolist()
        assert [tok.decode([int(b["input_ids"][i, j])]) for j in up] == [word] and w[i, up[0]] == 5.0
        assert b["labels"][i, up[0]] != -100
    with torch.no_grad():
        out = m.qwen(**b)
    ones = stage2.weighted_token_loss(out.logits, b["labels"], torch.ones_like(w))
    assert torch.allclose(ones, out.loss, atol=1e-6)
    ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].transpose(1, 2), b["labels"][:, 1:],
                                           ignore_index=-100, reduction="none")
    n = int((b["labels"][:, 1:] != -100).sum())
    up = (w[:, 1:] != 1)
    expect = (ce.sum() + 4 * ce[up].sum()) / n
    assert torch.allclose(stage2.weighted_token_loss(out.logits, b["labels"], w), expect, atol=1e-6)
    with pytest.raises(ValueError, match="yes_no_weight"):
        stage2.Collator(m, TRAIN, store, yes_no_weight=0.0)


@pytest.mark.parametrize("use_rae", [True, False], ids=["rae", "no-rae"])
def test_judgement_scores_and_the_zero_heatmap_check(use_rae):
    m = _model(use_rae=use_rae)
    m.set_trainable(False)
    store = _store(m)
    sc = stage2.judgement_scores(m, TRAIN, store)
    assert [s["id"] for s in sc] == [r["id"] for r in TRAIN]  # one clip-level judgement each
    assert [s["truth"] for s in sc] == ["yes", "no", "yes", "no"] and all(0 < s["p_yes"] < 1 for s in sc)
    zero = stage2.judgement_scores(m, TRAIN, store, zero_heatmaps=True)
    moved = [abs(a["p_yes"] - b["p_yes"]) for a, b in zip(sc, zero)]
    if use_rae:  # the heatmap reaches the answer through the RAE prompts ...
        assert max(moved) > 1e-6
    else:  # ... and only through them
        assert max(moved) == 0.0
    assert store.get(TRAIN[0]["clip"]).heat.abs().sum() > 0  # the cached heatmap itself is untouched
    assert stage2.judgement_auroc([{"truth": "yes", "p_yes": 0.9}, {"truth": "no", "p_yes": 0.2}]) == 1.0
    assert stage2.judgement_auroc([{"truth": "yes", "p_yes": 0.9}]) is None


class _MaskedVideo(Video):
    """A video record held in arrays: frames (T, H, W, 3) and object-id maps (T, H, W); object 1 is
    anomalous over the whole clip, every other id normal."""

    def __init__(self, name, frames, maps, has_masks=True):
        super().__init__(name, f"/no/such/{name}.mp4", len(frames), 8.0, frames.shape[1:3], split="train",
                         anomaly_rows=np.array([[1, 0, len(frames) - 1]]), has_masks=has_masks)
        self._frames, self._maps = frames, maps

    def read_frames(self, indices=None):
        return self._frames[self._indices(indices)]

    def _read_id_maps(self, idx):
        return self._maps[idx]


def test_ground_truth_heatmaps_the_oracle_view():
    clip = TRAIN[0]["clip"]  # "train0": the bright square moving right is the anomaly
    maps = np.zeros((4, 112, 112), np.int32)
    for t in range(4):
        maps[t, 30:60, 10 + 20 * t:40 + 20 * t] = 1
    maps[:, 90:100, 90:100] = 2  # a normal object: never part of the ground truth
    resolver = stage2.ClipResolver([_MaskedVideo("train0", ARRAYS["train0"], maps)])
    masks = resolver.masks(clip)
    assert masks.shape == (4, 112, 112) and set(np.unique(masks)) == {0, 1}

    m = _model()
    m.set_trainable(False)
    store = stage2.ClipStore(m, resolver)
    c = store.get(clip)
    T, h, w = c.heat.shape
    assert (T, h, w) == (2, 8, 8)
    # frames paired like the temporal patch (OR), then the anomalous fraction of each 14 x 14 patch
    want = (maps == 1).reshape(T, 2, 112, 112).any(1).reshape(T, h, 14, w, 14).mean((2, 4))
    view = stage2.HeatmapView(store, "ground_truth", resolver)
    got = view.get(clip)
    assert torch.allclose(got.heat, torch.from_numpy(want.astype(np.float32)))
    assert got.heat.max() == 1.0 and got.heat.min() == 0.0
    assert torch.equal(got.video_embeds, c.video_embeds) and torch.equal(store.get(clip).heat, c.heat)
    batch = stage2.Collator(m, TRAIN[:1], view, max_length=512)([{"idx": 0}])
    assert torch.equal(batch[HEATMAP_KWARG][0], got.heat)  # what training feeds the RAE
    assert not stage2.HeatmapView(store, "zeros").get(clip).heat.any()
    view.pixels = True  # settings go to the store underneath
    assert store.pixels is True

    with pytest.raises(stage2.ClipMissing, match="'gone'.*video record"):
        resolver.masks({**clip, "name": "gone", "source_video": "nowhere"})
    with pytest.raises(stage2.ClipMissing, match="no pixel masks"):
        stage2.ClipResolver([_MaskedVideo("train0", ARRAYS["train0"], maps, has_masks=False)]).masks(clip)
    with pytest.raises(ValueError, match="mask frames give 1 temporal steps"):
        stage2.ground_truth_heatmap(maps[:1], (T, h, w))
    with pytest.raises(ValueError, match="ground-truth heatmaps need the clip resolver"):
        stage2.HeatmapView(store, "ground_truth")
    with pytest.raises(ValueError, match="heatmap source"):
        stage2.HeatmapView(store, "ahd")


def test_rae_lr_scale_puts_the_from_scratch_parts_in_their_own_group():
    from peft import LoraConfig, get_peft_model

    m = _model()
    peft_model = get_peft_model(m.qwen, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    m.set_trainable(True)
    args = stage2.sft_config(CFG, "/tmp/unused", False, False)
    assert stage2.optimizer(m, peft_model, args, 1.0) is None  # the Trainer's own AdamW
    opt = stage2.optimizer(m, peft_model, args, 10.0)
    lora, own = opt.param_groups
    assert own["lr"] == pytest.approx(10 * lora["lr"]) and lora["lr"] == pytest.approx(CFG.lr)
    assert {id(p) for p in own["params"]} == {id(p) for p in m.trainable_parameters()}
    names = {id(p): n for n, p in peft_model.named_parameters()}
    assert lora["params"] and all("lora_" in names[id(p)] for p in lora["params"])
    with pytest.raises(ValueError, match="rae_lr_scale"):
        stage2.optimizer(m, peft_model, args, 0.0)


@pytest.mark.parametrize("cfg", [CFG, Stage2Config(**{**CFG.__dict__, "rae_lr_scale": 10.0}),
                                 Stage2Config(**{**CFG.__dict__, "yes_no_weight": 5.0})],
                         ids=["one-lr", "rae-lr-x10", "yes-no-x5"])
def test_killed_phase_resumes_to_the_same_weights(tmp_path, cfg):
    ref = _model()
    stage2.train_phase(ref, "a", TRAIN, VAL, _store(ref), cfg, tmp_path / "ref", progress=False, log=lambda s: None)
    m = _model()
    with pytest.raises(stage2.Killed):
        stage2.train_phase(m, "a", TRAIN, VAL, _store(m), cfg, tmp_path / "run", progress=False,
                           stop_after_steps=2, log=lambda s: None)
    assert (tmp_path / "run" / "trainer" / "checkpoint-2" / stage2.TRAINABLES_FILE).exists()
    m = _model()  # a fresh process: the base model again, the checkpoint holds the rest
    msgs = []
    res = stage2.train_phase(m, "a", TRAIN, VAL, _store(m), cfg, tmp_path / "run", progress=False, log=msgs.append)
    assert res.resumed_from and res.resumed_from.endswith("checkpoint-2") and "resuming" in msgs[0]
    a, b = _sd(ref), _sd(m)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    for (k, v), w in zip(ref.rae.state_dict().items(), m.rae.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-5), k


def test_paper_budget_fits_a_40_frame_clip_and_its_dialogue_in_max_length():
    """The paper preset's stage-2 values on the tiny backbone (same processor sizes as the 7B):
    a 40-frame 476x868 clip (10,540 merged tokens uncapped) plus a two-turn dialogue fit 2048."""
    from tvad.config import preset
    from tvad.corpus.dialogues import SYSTEM_PROMPT
    from tvad.model.tvad import TVADError, encode_dialogue

    p = preset("paper")
    s2 = p.stage2
    assert s2.max_length == 2048 and s2.video_max_tokens == 1280 and preset("cpu").stage2.video_max_tokens is None
    bb = build_tiny(seed=0, max_pixels=p.backbone.max_pixels)
    ahd = build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0)
    m = TVAD.build(bb, ahd, {"backbone": {"layers": LAYERS, "identity": bb.identity}}, p.rae, use_rae=True, seed=0,
                   meta={"fps": 1.0, "video_max_tokens": s2.video_max_tokens})
    n, (H, W) = p.data.clip_max_frames, p.data.clip_size
    name = "paper0"
    frames = np.random.default_rng(0).integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    msgs = [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Is anything unusual happening in this surveillance clip?"},
            {"role": "assistant", "content": "Yes. There is one anomalous target: a person."},
            {"role": "user", "content": "Describe the motion trajectory of the anomalous target."},
            {"role": "assistant", "content": "Target 1 moves from frame 4 to frame 22, initially positioned in the "
             "lower-right area, passing through the lower area, then rapidly shifts to the left, reaching the "
             "lower-left area, showing a wide, cross-regional range of motion and a smooth, fast speed. It leaves "
             "the view through the left after frame 22."}]
    rec = {"id": f"b/train/{name}", "clip": {"name": name, "source_video": name, "frame_indices": list(range(n)),
                                             "num_frames": n, "fps": 1.0, "size": [H, W], "label": 1, "path": ""},
           "messages": msgs}
    store = stage2.ClipStore(m, stage2.ClipResolver(arrays={name: frames}))
    col = stage2.Collator(m, [rec], store, max_length=s2.max_length, video_input=s2.video_input)  # "pixels"
    b = col([{"idx": 0}])
    t, h, w = b["video_grid_thw"][0].tolist()
    n_video = t * h * w // 4
    assert t == n // 2 and n_video <= s2.video_max_tokens
    assert b["pixel_values_videos"].shape[0] == t * h * w  # the ViT's input (pixels) has the same grid
    assert b[HEATMAP_KWARG][0].shape == (t, h, w)
    ids = b["input_ids"][0]
    assert len(ids) <= s2.max_length
    assert int((ids == m.video_token_id).sum()) == n_video  # the whole video, never truncated
    assert int((ids == m.token_ids["<|anomaly_pad|>"]).sum()) == t * m.num_prompts  # 20 x 14 RAE prompts
    assert m.encode(msgs, store.get(rec["clip"]), max_length=s2.max_length).num_turns == 2  # both turns kept
    # uncapped, the first turn alone is over max_length
    with pytest.raises(TVADError, match="first turn alone"):
        encode_dialogue(m.tokenizer, msgs, 20 * 34 * 62 // 4, t * m.num_prompts, m.video_token_id,
                        max_length=s2.max_length)


def test_clip_store_key_chat_and_checkpoint_carry_the_budget(tmp_path):
    from tvad.model.checkpoint import _run_video_max_tokens
    from tvad.model.tvad import TVADError

    free, capped = _model(), _model(video_max_tokens=24)  # 4 frames of 112x112: 32 tokens uncapped
    ids = {_store(free).identity, _store(capped).identity, _store(_model(video_max_tokens=16)).identity}
    assert len(ids) == 3
    store = _store(capped, tmp_path / "clips")
    c = store.get(TRAIN[0]["clip"])
    assert store.get(TRAIN[0]["clip"]) is c  # cached under the budget's key
    assert _store(free).get(TRAIN[0]["clip"]).num_video_tokens == 32
    assert c.num_video_tokens <= 24 and tuple(c.heat.shape) == tuple(c.grid_thw[0].tolist())
    assert (tmp_path / "clips" / store.identity).is_dir()
    store.model = free  # a model of another budget must not be served these clips
    with pytest.raises(TVADError, match="video_max_tokens=24"):
        store.get(TRAIN[0]["clip"])
    _, hist = capped.chat(ARRAYS["train0"], "Is there any anomaly in this video?", fps=8.0, max_new_tokens=2)
    assert hist.clip.grid_thw.tolist() == c.grid_thw.tolist()  # chat sees what training saw
    save_model(capped, tmp_path / "ck")
    back = load(tmp_path / "ck")
    assert back.video_max_tokens == 24
    assert back.encode_clip(ARRAYS["train0"], 8.0).grid_thw.tolist() == c.grid_thw.tolist()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("stage2:\n  video_max_tokens: 1280\n")
    assert _run_video_max_tokens(tmp_path / "run") == 1280 and _run_video_max_tokens(tmp_path) is None
