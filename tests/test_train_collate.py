"""Stage 2's collator: labels masked but for the answers, evidence handed over (heatmaps, video
tokens or pixels), the Yes/No loss weights, and the paper's budget fitting a 40-frame clip."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from stage2_fixtures import ARRAYS, CFG, LAYERS, TRAIN, VAL, _changed, _MaskedVideo, _model, _sd, _store  # noqa: F401

from tvad.config import AHDConfig
from tvad.model.build import build_ahd
from tvad.model.tiny import build_tiny
from tvad.model.tvad import HEATMAP_KWARG, TVAD, VIDEO_EMBEDS_KWARG
from tvad.train import stage2
from tvad.train.clips import ClipMissing, ClipResolver, ClipStore, check_clips
from tvad.train.collate import TOKEN_WEIGHTS, Collator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_collator_masks_pads_and_hands_over_evidence():
    m = _model()
    store = _store(m)
    col = Collator(m, TRAIN, store, max_length=512)
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
    colp = Collator(m, TRAIN, _store(m), max_length=512, video_input="pixels")
    bp = colp([{"idx": 0}, {"idx": 1}])
    assert "pixel_values_videos" in bp and VIDEO_EMBEDS_KWARG not in bp
    with torch.no_grad():
        le = m.qwen(**b).loss
        lp = m.qwen(**bp).loss
    assert torch.allclose(le, lp, atol=1e-5)
    # a record whose clip is gone: a clear error naming it
    gone = dict(TRAIN[0], id="b/train/gone", clip=dict(TRAIN[0]["clip"], name="gone", source_video="gone",
                                                         path="/nonexistent/gone.mp4"))
    with pytest.raises(ClipMissing, match="b/train/gone.*gone"):
        check_clips([gone], store)


def test_yes_no_weight_weights_the_answer_word_only_and_one_is_the_plain_loss():
    m = _model()
    m.set_trainable(False)
    store = _store(m)
    plain = Collator(m, TRAIN, store, max_length=512)([{"idx": 0}, {"idx": 1}])
    assert TOKEN_WEIGHTS not in plain  # the paper's loss: TRL's own token mean
    b = Collator(m, TRAIN, store, max_length=512, yes_no_weight=5.0)([{"idx": 0}, {"idx": 1}])
    w = b.pop(TOKEN_WEIGHTS)
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
        Collator(m, TRAIN, store, yes_no_weight=0.0)


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
    store = ClipStore(m, ClipResolver(arrays={name: frames}))
    col = Collator(m, [rec], store, max_length=s2.max_length, video_input=s2.video_input)  # "pixels"
    b = col([{"idx": 0}])
    t, h, w = b["video_grid_thw"][0].tolist()
    n_video = t * h * w // 4
    assert t == n // 2 and n_video <= s2.video_max_tokens
    assert b["pixel_values_videos"].shape[0] == t * h * w  # the ViT's input (pixels) has the same grid
    assert (h, w) == (10, 20) and b[HEATMAP_KWARG][0].shape == (t, 34, 62)  # the heat: the AHD's grid (stage 1's)
    assert m.rae_input(store.get(rec["clip"])).shape == (t, h, w)  # the RAE reads it on the token grid
    ids = b["input_ids"][0]
    assert len(ids) <= s2.max_length
    assert int((ids == m.video_token_id).sum()) == n_video  # the whole video, never truncated
    assert int((ids == m.token_ids["<|anomaly_pad|>"]).sum()) == t * m.num_prompts  # 20 x 14 RAE prompts
    assert m.encode(msgs, store.get(rec["clip"]), max_length=s2.max_length).num_turns == 2  # both turns kept
    # uncapped, the first turn alone is over max_length
    with pytest.raises(TVADError, match="first turn alone"):
        encode_dialogue(m.tokenizer, msgs, 20 * 34 * 62 // 4, t * m.num_prompts, m.video_token_id,
                        max_length=s2.max_length)
