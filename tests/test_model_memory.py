"""Memory and precision at the 7B's widths, checked on the tiny model: text features pooled in
float32 (eq. 2) whatever the model's dtype, and the prompt rows' mean without a float32 copy of the
embedding table."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from tvad.model import inject as tvad_module
from tvad.model.tiny import build_tiny
from tvad.model.tvad import _row_mean, add_prompt_tokens
from tvad.prompts import class_prompts

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BOUND = 0.01  # relative error of t_abnormal - t_normal allowed for a bf16 model against the fp32 one


def _difference(f_abnormal: torch.Tensor, f_normal: torch.Tensor) -> torch.Tensor:
    return f_abnormal.float().mean(0) - f_normal.float().mean(0)  # eq. 4: t_c = mean_K F_c


def _bf16_pooling(bb, prompts):
    """The pooling before the fix: masked mean of the embedding rows in the model's dtype."""
    tok = bb.tokenizer(list(prompts), padding=True, return_tensors="pt")
    h = bb.model.get_input_embeddings()(tok["input_ids"])
    mk = tok["attention_mask"].unsqueeze(-1).to(h.dtype)
    return ((h * mk).sum(1) / mk.sum(1).clamp_min(1)).float()


def test_text_features_pooled_in_float32_on_a_bf16_model():
    abnormal, normal = class_prompts("synthetic", k=8)
    ref_bb = build_tiny(seed=0)
    ref = _difference(ref_bb.text_features(abnormal), ref_bb.text_features(normal))
    bb = build_tiny(seed=0)
    bb.model.to(torch.bfloat16)
    fa, fn = bb.text_features(abnormal), bb.text_features(normal)
    assert fa.dtype == torch.float32 and fa.shape == (len(abnormal), bb.text_dim)
    err = ((_difference(fa, fn) - ref).norm() / ref.norm()).item()
    old = ((_difference(_bf16_pooling(bb, abnormal), _bf16_pooling(bb, normal)) - ref).norm() / ref.norm()).item()
    assert err < BOUND < old, (err, old)  # the bf16 pooling fails the bound the fp32 pooling keeps
    # what is left is the bf16 table's own rounding: pooling its rows exactly in float64 gives the same
    tok = bb.tokenizer(list(abnormal), padding=True, return_tensors="pt")
    h = bb.model.get_input_embeddings()(tok["input_ids"]).double()
    mk = tok["attention_mask"].unsqueeze(-1).double()
    assert torch.allclose(fa.double(), (h * mk).sum(1) / mk.sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_mean_in_chunks_equals_the_float32_copy(dtype):
    table = torch.randn(1000, 48).to(dtype)
    for n, chunk in ((1000, 64), (997, 128), (5, 8192)):
        assert torch.allclose(_row_mean(table, n, chunk=chunk), table[:n].float().mean(0), rtol=1e-5, atol=1e-6)


def test_prompt_rows_get_the_same_mean_as_before_without_a_float32_table_copy(monkeypatch):
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    bb.model.to(torch.bfloat16)
    w = bb.model.get_input_embeddings().weight
    n = len(bb.tokenizer)
    want = w[:n].float().mean(0).to(w.dtype)  # the old computation
    big = []
    real_float = torch.Tensor.float

    def spy(t, *a, **k):  # every float32 copy made while the rows are initialised
        if t.dim() == 2 and t.shape[0] > 100:
            big.append(tuple(t.shape))
        return real_float(t, *a, **k)

    monkeypatch.setattr(tvad_module, "MEAN_CHUNK_ROWS", 100)  # the tiny table (832 rows) in 9 chunks
    monkeypatch.setattr(torch.Tensor, "float", spy)
    ids = add_prompt_tokens(bb.model, bb.tokenizer)
    monkeypatch.undo()
    assert not big
    for i in ids.values():
        assert torch.allclose(w[i].float(), want.float(), rtol=1e-2, atol=1e-3)  # bf16 rounding of one value
    assert (w[list(ids.values())].float() - want.float()).abs().max() <= want.float().abs().max() * 2 ** -7


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pread_loading_equals_transformers_own(dtype, tmp_path):
    """from_pretrained hands transformers lazy pread slices (no whole-file mmap held while loading):
    the same weights, buffers, configs and tied head as transformers' own loading of the folder."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tvad.model.backbone import _weight_files, from_pretrained

    build_tiny(seed=0).save_pretrained(tmp_path / "bb")
    assert _weight_files(tmp_path / "bb") == [tmp_path / "bb" / "model.safetensors"]
    a = from_pretrained(tmp_path / "bb", dtype=dtype).model
    b = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "bb", dtype=getattr(torch, dtype))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and not [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.named_buffers(), b.named_buffers()))
    assert a.generation_config.to_dict() == b.generation_config.to_dict()
    ca, cb = a.config.to_dict(), b.config.to_dict()
    assert {k for k in ca if ca[k] != cb.get(k)} <= {"_name_or_path"}
    assert a.lm_head.weight.data_ptr() == a.get_input_embeddings().weight.data_ptr()  # tied as saved
