"""Stage 2 on a tiny model and a tiny corpus: SFTTrainer phases A -> merge -> B -> merge, LoRA
placement, the RAE's own LR group, resume after a kill, self-contained checkpoints with identical logits."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from stage2_fixtures import ARRAYS, CFG, LAYERS, TRAIN, VAL, _changed, _MaskedVideo, _model, _sd, _store  # noqa: F401

from tvad.config import Stage2Config
from tvad.evaluate.dialogues import evaluate_dialogues
from tvad.model import load
from tvad.train import stage2
from tvad.train.common import Killed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    metrics, preds = evaluate_dialogues(m2, VAL, store, max_new_tokens=4)
    assert {"yes_no_accuracy", "yes_no_balanced_accuracy", "bleu4_trajectory"} <= set(metrics)
    assert len(preds) == 4 and all(isinstance(p["answer"], str) for p in preds)


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
    with pytest.raises(Killed):
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
