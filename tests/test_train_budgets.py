"""Per-clip video token budgets (`tvad.train.clips.dialogue_budgets`): a clip whose longest dialogue
would not fit stage2.max_length beside its video gets the room that dialogue leaves, so no training
sequence is cut (the video shrinks instead); clips that fit keep the model's budget, and a dialogue
too long for any video is an error naming it. On the real tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stage2_fixtures import _model
from tvad.model.tvad import TVADError, encode_dialogue
from tvad.train.clips import ClipStore, dialogue_budgets
from tvad.train.features import feature_grid


def _rec(name, n_frames, words, size=(224, 224)):
    q = "Describe every target. " + "word " * words
    return {"id": f"b/train/{name}", "clip": {"name": name, "num_frames": n_frames, "size": list(size), "fps": 8.0,
                                              "source_video": name, "frame_indices": list(range(n_frames))},
            "messages": [{"role": "system", "content": "You watch a camera."}, {"role": "user", "content": q},
                         {"role": "assistant", "content": "Yes."}]}


def test_budgets_keep_every_dialogue_whole():
    model = _model()
    short, long_ = _rec("a", 8, 10), _rec("b", 8, 200)
    t, h, w = feature_grid(model.backbone, 8, 224, 224)
    natural = t * h * w // 4  # the clip's merged video tokens at the backbone's max_pixels
    text = encode_dialogue(model.tokenizer, long_["messages"], 0, 4 * model.num_prompts,
                           model.video_token_id).input_ids.numel()
    assert dialogue_budgets(model, [short, long_], max_length=text + natural) == {}  # both fit whole
    L = text + natural // 2  # the long dialogue leaves room for half its video
    b = dialogue_budgets(model, [short, long_, _rec("b", 8, 20)], max_length=L)
    assert b == {"b": natural // 2}  # its clip gets the room its longest dialogue leaves
    frames = np.random.default_rng(0).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    store = ClipStore(model, lambda c: frames, video_embeds=True, budgets=b)
    c = store.get(long_["clip"])
    enc = model.encode(long_["messages"], c, max_length=L)
    assert c.num_video_tokens <= b["b"] and enc.num_turns == 1 and enc.input_ids.numel() <= L  # nothing cut
    assert store.get(short["clip"]).num_video_tokens == natural  # the other clip is untouched
    assert store.key(long_["clip"]) != ClipStore(model, lambda c: frames).key(long_["clip"])  # never served unbudgeted
    with pytest.raises(TVADError, match=r"corpus record 'b/train/b': .* no room for the 8-frame video under max_length"):
        dialogue_budgets(model, [long_], max_length=text)
