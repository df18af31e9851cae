"""The full model (eq. 13): prompt tokens, injection in forward and generate, positions, chat, bad input."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch


from tvad.config import AHDConfig, RAEConfig
from tvad.model import build_ahd
from tvad.model.chat import History
from tvad.model.tiny import build_tiny
from tvad.model.tvad import HEATMAP_KWARG, PROMPT_TOKENS, VIDEO_EMBEDS_KWARG, TVAD, TVADError, add_prompt_tokens

LAYERS = [0, 3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")
MSGS = [{"role": "system", "content": "You watch a fixed camera."},
        {"role": "user", "content": "Is there any anomaly in this video?"},
        {"role": "assistant", "content": "Yes, a person runs to the right."},
        {"role": "user", "content": "How does it move?"},
        {"role": "assistant", "content": "It moves right quickly."}]


def _tiny_model(use_rae=True, use_ahd=True, seed=0) -> TVAD:
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    ahd = build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0)
    meta = {"backbone": {"layers": LAYERS, "identity": bb.identity}}
    return TVAD.build(bb, ahd, meta, RAEConfig(channels=8), use_rae=use_rae, use_ahd=use_ahd, seed=seed,
                      meta={"fps": 8.0})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _tiny_model()


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clip(model, frames):
    c = model.encode_clip(frames, 8.0)
    c.heat = torch.rand_like(c.heat)  # a non-trivial heatmap (the random AHD's is near-constant)
    return c


def _capture_decoder_inputs(model):
    """A pre-hook on the language model recording the inputs_embeds and position_ids it receives."""
    seen = []

    def hook(mod, args, kwargs):
        pos = kwargs.get("position_ids")
        seen.append({"emb": kwargs["inputs_embeds"].detach().clone(), "pos": None if pos is None else pos.clone()})

    h = model.qwen.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, h


def test_prompt_tokens_added_without_shrinking_and_mean_initialised():
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    rows = bb.model.get_input_embeddings().weight.shape[0]
    n = len(bb.tokenizer)
    mean = bb.model.get_input_embeddings().weight[:n].mean(0)
    ids = add_prompt_tokens(bb.model, bb.tokenizer)
    assert list(ids) == list(PROMPT_TOKENS) and sorted(ids.values()) == [n, n + 1, n + 2]
    assert bb.model.get_input_embeddings().weight.shape[0] == rows  # spare rows used, nothing resized
    for t in PROMPT_TOKENS:
        assert torch.allclose(bb.model.get_input_embeddings().weight[ids[t]], mean, atol=1e-6)
        assert len(bb.tokenizer(t, add_special_tokens=False)["input_ids"]) == 1
    assert add_prompt_tokens(bb.model, bb.tokenizer) == ids  # idempotent
    # a full table grows (to a multiple of 64), never shrinks
    bb2 = build_tiny(seed=0, max_pixels=112 * 112)
    bb2.model.resize_token_embeddings(len(bb2.tokenizer))
    ids2 = add_prompt_tokens(bb2.model, bb2.tokenizer)
    r2 = bb2.model.get_input_embeddings().weight.shape[0]
    assert r2 > max(ids2.values()) and r2 % 64 == 0 and r2 >= len(bb2.tokenizer)


def test_text_layout_and_labels(model, clip):
    enc = model.encode(MSGS, clip)
    ids = enc.input_ids
    tok = model.tokenizer
    o, p, c = (model.token_ids[t] for t in PROMPT_TOKENS)
    n_prompts = clip.heat.shape[0] * model.num_prompts
    assert model.num_prompts == 4 + 9 + 1
    assert int((ids == p).sum()) == n_prompts and int((ids == o).sum()) == 1 and int((ids == c).sum()) == 1
    vs = tok.convert_tokens_to_ids("<|vision_start|>")
    i_open, i_close, i_vs = (int((ids == x).nonzero()[0]) for x in (o, c, vs))
    assert i_open < i_close == i_open + n_prompts + 1 == i_vs - 1  # <open> P... <close><|vision_start|>
    assert int((ids == model.video_token_id).sum()) == clip.num_video_tokens == int(clip.grid_thw.prod()) // 4
    assert torch.equal(enc.mm_token_type_ids == 2, ids == model.video_token_id)
    lab = enc.labels
    assert (lab[(ids == o) | (ids == p) | (ids == c) | (ids == model.video_token_id)] == -100).all()
    text = tok.decode(ids[lab != -100])
    assert text == "Yes, a person runs to the right.<|im_end|>It moves right quickly.<|im_end|>"


def test_injected_rows_reach_the_decoder_and_positions_match(model, clip):
    """The decoder's input rows at the placeholders are exactly P; open/close rows are the trained
    rows; video rows are V; and the rotary positions equal those of the same ids without injection."""
    enc = model.encode(MSGS, clip)
    inputs = model.model_inputs(enc, clip)
    seen, h = _capture_decoder_inputs(model)
    try:
        with torch.no_grad():
            model.qwen(**inputs, **{HEATMAP_KWARG: [clip.heat], VIDEO_EMBEDS_KWARG: [clip.video_embeds]})
            # reference: the same ids through the bare model (injector removed), pixels through the ViT
            inj = model.qwen.model._modules.pop("anomaly_injector")
            try:
                pix = model.backbone.preprocess(np.zeros((4, 112, 112, 3), np.uint8), 8.0)["pixel_values_videos"]
                model.qwen(**inputs, pixel_values_videos=pix)
            finally:
                model.qwen.model._modules["anomaly_injector"] = inj
            # and what happens with inputs_embeds alone (no ids): positions go wrong
            emb = model.qwen.get_input_embeddings()(inputs["input_ids"])
            kw = {k: v for k, v in inputs.items() if k != "input_ids"}
            model.qwen.model.rope_deltas = None
            model.qwen(inputs_embeds=emb, **kw)
    finally:
        h.remove()
    ours, bare, no_ids = seen
    ids = enc.input_ids
    P = model.rae(clip.heat).flatten(0, 1)
    is_pad = ids == model.token_ids[PROMPT_TOKENS[1]]
    assert torch.allclose(ours["emb"][0, is_pad], P, atol=1e-6)
    for k, t in enumerate(PROMPT_TOKENS[::2]):
        assert torch.allclose(ours["emb"][0, ids == model.token_ids[t]], model.injector.token_rows[2 * k], atol=1e-6)
    is_v = ids == model.video_token_id
    assert torch.allclose(ours["emb"][0, is_v], clip.video_embeds, atol=1e-6)
    rest = ~(is_pad | is_v)
    rest &= ~((ids == model.token_ids[PROMPT_TOKENS[0]]) | (ids == model.token_ids[PROMPT_TOKENS[2]]))
    assert torch.allclose(ours["emb"][0, rest], bare["emb"][0, rest])
    assert torch.equal(ours["pos"], bare["pos"])  # multimodal rotary positions untouched by the injection
    assert no_ids["pos"] is None  # (the test can tell: without ids Qwen falls back to 1-D text positions)
    assert ours["pos"].shape[0] in (3, 4) and not torch.equal(ours["pos"][-3][0], ours["pos"][-2][0])


def test_gradients_flow_to_rae_and_token_rows(model, clip):
    model.set_trainable(True)
    try:
        for p in model.injector.parameters():
            p.grad = None
        out = model.forward(MSGS, clip)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        for name, p in model.rae.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        g = model.injector.token_rows.grad
        assert g is not None and g[0].abs().sum() > 0 and g[2].abs().sum() > 0
        # the frozen backbone gets no gradient
        assert all(p.grad is None for p in model.qwen.model.visual.parameters())
    finally:
        model.set_trainable(False)
        for p in model.injector.parameters():
            p.grad = None


def test_heatmap_changes_the_logits(model, clip):
    with torch.no_grad():
        a = model.forward(MSGS, clip).logits
        c2 = type(clip)(**{**clip.__dict__, "heat": torch.zeros_like(clip.heat)})
        b = model.forward(MSGS, c2).logits
    assert (a - b).abs().max() > 1e-4


def test_generate_uses_the_prompts_without_unknown_kwargs(model, clip):
    enc = model.encode(MSGS[:2], clip, add_generation_prompt=True)
    inputs = model.model_inputs(enc, clip)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    mm = {"video": BaseModelOutputWithPooling(pooler_output=(clip.video_embeds,))}
    with pytest.raises(ValueError):  # why the hand-over goes through PromptInjector.pending
        model.qwen.generate(**inputs, mm_encoder_outputs=mm, max_new_tokens=2, **{HEATMAP_KWARG: [clip.heat]})
    seen, h = _capture_decoder_inputs(model)
    try:
        with torch.no_grad(), model.injector.pending(heatmaps=[clip.heat], video_grid_thw=clip.grid_thw):
            out = model.qwen.generate(**inputs, mm_encoder_outputs=mm, max_new_tokens=3, do_sample=False,
                                      min_new_tokens=3)
        with torch.no_grad():
            ref = model.qwen(**inputs, **{HEATMAP_KWARG: [clip.heat], VIDEO_EMBEDS_KWARG: [clip.video_embeds]})
    finally:
        h.remove()
    prefill, ref_in = seen[0], seen[-1]
    is_pad = enc.input_ids == model.token_ids[PROMPT_TOKENS[1]]
    assert torch.allclose(prefill["emb"][0, is_pad], model.rae(clip.heat).flatten(0, 1), atol=1e-6)
    assert torch.equal(prefill["pos"][-3:], ref_in["pos"][-3:])  # same positions as the training forward
    assert out.shape[1] == enc.input_ids.shape[0] + 3
    assert int(out[0, enc.input_ids.shape[0]]) == int(ref.logits[0, -1].argmax())  # first token = forward argmax
    # missing heatmaps: a clear error
    with torch.no_grad(), pytest.raises(TVADError, match="no heatmaps"):
        model.qwen.generate(**inputs, mm_encoder_outputs=mm, max_new_tokens=1)


def test_chat_multi_turn_and_bad_input(model, frames):
    a1, h1 = model.chat(frames, "Is there any anomaly in this video?", max_new_tokens=4)
    assert isinstance(a1, str) and isinstance(h1, History) and len(h1) == 3 and h1[-1]["content"] == a1
    a2, h2 = model.chat(frames, "How does it move?", h1, max_new_tokens=4)
    assert len(h2) == 5 and h2[:3] == list(h1) and h2.clip is h1.clip  # same heatmap evidence
    with pytest.raises(TVADError, match="another video"):
        model.chat(frames[::-1].copy(), "And then?", h2)
    with pytest.raises(TVADError, match="needs a video"):
        model.chat(None, "Is there any anomaly?")
    with pytest.raises(TVADError, match="shorter than one temporal patch"):
        model.chat(frames[:1], "Is there any anomaly?")
    with pytest.raises(TVADError, match="non-empty"):
        model.chat(frames, "  ")
    with pytest.raises(TVADError, match="History"):
        model.chat(frames, "How?", [{"role": "system", "content": "x"}])
    with pytest.raises(TVADError, match="placeholder"):  # wrong number of prompts for the heatmap
        enc = model.encode(MSGS, h1.clip)
        with torch.no_grad():
            model.qwen(**model.model_inputs(enc, h1.clip), **{HEATMAP_KWARG: [h1.clip.heat[:1]],
                                                              VIDEO_EMBEDS_KWARG: [h1.clip.video_embeds]})


def test_switches_and_parameter_counts(frames):
    no_rae = _tiny_model(use_rae=False)
    c = no_rae.encode_clip(frames, 8.0)
    enc = no_rae.encode(MSGS, c)
    assert not any(int((enc.input_ids == i).sum()) for i in no_rae.token_ids.values())
    assert no_rae.num_prompts == 0
    n = no_rae.parameter_counts()
    assert n["rae"] == 0 and n["prompt_tokens"] == 0 and n["ahd"] > 0
    no_ahd = _tiny_model(use_ahd=False)
    c2 = no_ahd.encode_clip(frames, 8.0)
    assert float(c2.heat.abs().sum()) == 0.0 and no_ahd.num_prompts == 14
    full = _tiny_model()
    f = full.parameter_counts(lora={"r": 16, "targets": ["q_proj", "v_proj"], "phases": [None, [1]]})
    D = full.qwen.config.text_config.hidden_size
    assert f["prompt_tokens"] == 3 * D and f["rae"] == sum(p.numel() for p in full.rae.parameters())
    q = full.qwen.model.language_model.layers[0].self_attn
    per_layer = 16 * (q.q_proj.in_features + q.q_proj.out_features + q.v_proj.in_features + q.v_proj.out_features)
    assert f["lora"] == 3 * per_layer  # phase A: 2 layers, phase B: 1 layer
    assert f["stage2_trainable"] == f["rae"] + f["prompt_tokens"] + f["lora"]
    assert no_ahd.parameter_counts()["ahd"] == 0

