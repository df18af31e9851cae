"""Stage 2: the RAE, the three prompt tokens and LoRA, trained with TRL's SFTTrainer in two phases.

The paper's recipe (section 4.1): load the best AHD; LoRA r 16, alpha 32, dropout 0.05 on the
decoder's q_proj / v_proj only (the ViT's attention is `qkv`, so it is never touched); trainable:
RAE, the three new token rows, LoRA. Phase A on the all-object corpus with LoRA on every decoder
layer; merge; phase B on the anomaly-focused corpus with a fresh LoRA on the last four layers;
merge. After each phase a checkpoint (`tvad.model.save_model`; by `stage2.checkpoints` a delta of
the base backbone or a full merge) that `tvad.load` restores.

    clips = ClipStore(model, resolver, run.dir / "stage2" / "clips")       # train/clips.py: V + heatmap per clip
    res = train_phase(model, "a", train_a, val_a, clips, cfg.stage2, out / "phase_a")
    res = train_phase(model, "b", train_b, val_b, clips, cfg.stage2, out / "phase_b")
    metrics, preds = evaluate_dialogues(model, test_records, clips)        # tvad.evaluate.dialogues

Batches come from `tvad.train.collate.Collator` (the chat template, labels masked but for the
answers, the evidence: heatmaps and video tokens or pixels, and with `stage2.yes_no_weight` != 1
per-token loss weights on the "Yes"/"No" word of each yes/no answer, which the trainer's loss
here applies). A killed phase resumes from its last Trainer checkpoint (LoRA, optimizer,
scheduler, RNG + `tvad_trainables.safetensors`).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tvad import dist
from tvad.config import ConfigError
from tvad.io import atomic_write_json
from tvad.model.ahd import CheckpointError, load_weights, read_safetensors
from tvad.model.checkpoint import save_model
from tvad.model.tvad import TVAD
from tvad.train.clips import ClipStore
from tvad.train.collate import TOKEN_WEIGHTS, Collator
from tvad.train.common import Killed

TRAINABLES_FILE = "tvad_trainables.safetensors"


# -- the collator -------------------------------------------------------------------------------------


# -- corpus -------------------------------------------------------------------------------------------


# -- one phase ----------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    final_dir: Path  # the self-contained checkpoint of the merged model
    history: list[dict]  # Trainer log history (loss, learning_rate, eval_loss, step, epoch)
    best_checkpoint: str | None  # Trainer checkpoint chosen by validation loss
    steps: int  # optimizer steps
    seconds: float  # wall time of the training
    resumed_from: str | None  # the checkpoint a killed run resumed from


def _trainables_state(model: TVAD) -> dict[str, torch.Tensor]:
    st = {"token_rows": model.injector.token_rows.detach().cpu().contiguous()}
    if model.rae is not None:
        st.update({f"rae.{k}": v.detach().cpu().contiguous() for k, v in model.rae.state_dict().items()})
    return st


def _load_trainables(model: TVAD, ckpt: str | os.PathLike) -> None:

    f = Path(ckpt) / TRAINABLES_FILE
    if not f.exists():
        raise FileNotFoundError(f"{ckpt}: no {TRAINABLES_FILE} (RAE / token rows) in this checkpoint")
    st = read_safetensors(f)  # a corrupt or non-finite file: a CheckpointError naming it
    rows = model.injector.token_rows
    if "token_rows" not in st or tuple(st["token_rows"].shape) != tuple(rows.shape):
        raise CheckpointError(f"{f}: token_rows {tuple(st['token_rows'].shape) if 'token_rows' in st else 'missing'}, "
                              f"the model has {tuple(rows.shape)}")
    with torch.no_grad():
        rows.copy_(st["token_rows"].to(rows.device))
        if model.rae is not None:
            load_weights(model.rae, {k[4:]: v for k, v in st.items() if k.startswith("rae.")}, f)


def _callbacks(model: TVAD, stop_after_steps: int | None):
    from transformers import TrainerCallback

    class Trainables(TrainerCallback):
        """RAE + token rows saved into every Trainer checkpoint, the best ones restored at the end."""

        def on_save(self, args, state, control, **kw):
            ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ck.is_dir() and state.is_world_process_zero:
                save_file(_trainables_state(model), str(ck / TRAINABLES_FILE))

        def on_train_end(self, args, state, control, **kw):
            if args.load_best_model_at_end and state.best_model_checkpoint:
                _load_trainables(model, state.best_model_checkpoint)

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                raise Killed(f"stopped after step {state.global_step}")

    return [Trainables(), Stop()]


def _quiet(trainer, progress: bool) -> None:
    """A progress bar (with the loss) but no printed dict per logged step; nothing without progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(QuietProgress())


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                        num_items: int | torch.Tensor | None = None) -> torch.Tensor:
    """sum(w * CE) / num_items over the supervised tokens (labels != -100), position i predicting
    token i + 1. logits (B, S, V), labels (B, S), weights (B, S); num_items defaults to the number of
    supervised tokens, so all-ones weights give the decoder's own mean token loss."""

    target = labels[:, 1:]
    keep = target != -100  # only the supervised positions' logits go to float (the video dominates S)
    ce = F.cross_entropy(logits[:, :-1][keep].float(), target[keep], reduction="none")  # (N,)
    n = keep.sum() if num_items is None else num_items
    return (ce * weights[:, 1:][keep].to(ce)).sum() / torch.as_tensor(n, device=ce.device).clamp(min=1)


def _weighted_trainer(base):
    """`base` (TRL's SFTTrainer) with per-token loss weights: a batch carrying `TOKEN_WEIGHTS` gets
    `weighted_token_loss`, normalised like TRL's own token mean (the tokens of the whole accumulated
    batch); a batch without them goes to TRL's loss unchanged. TRL has no per-token weights (its
    `compute_loss_func` is deprecated and sees no batch keys), hence the subclass. Weighted batches
    skip TRL's logged token accuracy and entropy (the loss is logged as usual)."""

    class WeightedSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            w = inputs.pop(TOKEN_WEIGHTS, None)
            if w is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            out = model(**{**{k: v for k, v in inputs.items() if k != "labels"}, "use_cache": False})
            loss = weighted_token_loss(out.logits, inputs["labels"], w, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL: DDP averages
            return (loss, out) if return_outputs else loss

    return WeightedSFTTrainer


def lora_layers(model: TVAD, phase: str, last: int) -> list[int] | None:
    """None (every decoder layer) for phase A, the last `last` layers for phase B."""
    if phase == "a":
        return None
    n = len(model.qwen.model.language_model.layers)
    return list(range(max(0, n - int(last)), n))


def sft_config(cfg, out_dir: Path, has_val: bool, progress: bool):
    """TRL SFTConfig from a Stage2Config (CPU: use_cpu, fp32; GPU: bf16 as configured, fused AdamW)."""

    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    steps = max(1, int(cfg.eval_steps))
    world = dist.world_size()  # under `accelerate launch`: the global batch stays batch_size x grad_accum
    if int(cfg.grad_accum) % world:
        raise ConfigError(f"stage2.grad_accum {cfg.grad_accum} is not a multiple of the {world} launched processes: "
                         "the global batch (batch_size x grad_accum) must split evenly across them; set stage2.grad_accum "
                          f"to a multiple of {world} (a different global batch) or launch fewer processes")
    kw = dict(
        output_dir=str(out_dir), num_train_epochs=float(cfg.epochs), per_device_train_batch_size=int(cfg.batch_size),
        per_device_eval_batch_size=int(cfg.batch_size), gradient_accumulation_steps=int(cfg.grad_accum) // world,
        learning_rate=float(cfg.lr), lr_scheduler_type="cosine", warmup_steps=float(cfg.warmup_ratio),
        weight_decay=0.0, optim="adamw_torch_fused" if cuda else "adamw_torch",
        logging_steps=1, eval_strategy="steps" if has_val else "no", eval_steps=steps,
        save_strategy="steps", save_steps=steps, load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss", greater_is_better=False,
        bf16=bool(cfg.bf16) and cuda, fp16=False, use_cpu=not cuda,
        max_length=int(cfg.max_length), remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True},
        packing=False, report_to="none", seed=int(cfg.seed), data_seed=int(cfg.seed), dataloader_num_workers=0,
        disable_tqdm=not progress, ddp_find_unused_parameters=False,
    )
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    ac = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    kw[ac] = bool(cfg.gradient_checkpointing)
    kw[ac + "_kwargs"] = {"use_reentrant": False}
    return SFTConfig(**{k: v for k, v in kw.items() if k in names})


def optimizer(model: TVAD, peft_model, args, rae_lr_scale: float = 1.0) -> torch.optim.Optimizer | None:
    """AdamW with two parameter groups, LoRA at `args.learning_rate` and the from-scratch parts (RAE,
    prompt-token rows) at `rae_lr_scale` times that; None (the Trainer's own optimizer) for a scale
    of 1. The Trainer still builds the cosine schedule on it, which scales both groups alike."""
    if rae_lr_scale <= 0:
        raise ValueError(f"rae_lr_scale must be > 0, got {rae_lr_scale}")
    own = [p for p in model.trainable_parameters() if p.requires_grad]
    if rae_lr_scale == 1.0 or not own:
        return None
    ids = {id(p) for p in own}
    lora = [p for p in peft_model.parameters() if p.requires_grad and id(p) not in ids]
    lr = float(args.learning_rate)
    groups = [{"params": lora, "lr": lr}, {"params": own, "lr": lr * rae_lr_scale}]
    kw = {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon, "weight_decay": args.weight_decay}
    if args.optim == "adamw_torch_fused":  # as sft_config chose for the Trainer's own optimizer
        kw["fused"] = True
    return torch.optim.AdamW([g for g in groups if g["params"]], **kw)


def train_phase(model: TVAD, phase: str, train_records: Sequence[dict], val_records: Sequence[dict],
                clips: ClipStore, cfg, out_dir: str | os.PathLike, resume: bool = True, progress: bool = True,
                stop_after_steps: int | None = None, meta: dict | None = None, log: Callable[[str], None] = print
                ) -> PhaseResult:
    """One stage-2 phase ("a": LoRA on every decoder layer, "b": fresh LoRA on the last
    `cfg.phase_b_last_layers`), then merge and save `out_dir/final`. `cfg` a Stage2Config.

    Trainer checkpoints live in `out_dir/trainer`; `resume=True` continues from the last one.
    The model is trained in place and is the merged model afterwards."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    if phase not in ("a", "b"):
        raise ValueError(f"phase must be 'a' or 'b', got {phase!r}")
    if not train_records:
        raise ValueError(f"phase {phase}: no training dialogues")
    out = Path(out_dir)
    tdir = out / "trainer"
    tdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg.seed))
    layers = lora_layers(model, phase, cfg.phase_b_last_layers)
    lcfg = LoraConfig(r=int(cfg.lora_r), lora_alpha=int(cfg.lora_alpha), lora_dropout=float(cfg.lora_dropout),
                      target_modules=list(cfg.lora_targets), layers_to_transform=layers,
                      layers_pattern="layers" if layers is not None else None, bias="none", task_type="CAUSAL_LM")
    qwen = model.qwen
    peft_model = get_peft_model(qwen, lcfg)
    wrapped = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    bad = [n for n in wrapped if "language_model" not in n]
    if bad or not wrapped:
        raise RuntimeError(f"LoRA must sit on the language model only; got {bad or 'none'}")
    model.set_trainable(True)
    collator = Collator(model, train_records, clips, cfg.max_length, getattr(cfg, "video_input", "embeds"),
                        float(getattr(cfg, "yes_no_weight", 1.0)))
    val_collator_records = list(val_records)
    all_records = list(train_records) + val_collator_records
    collator.records = all_records
    train_ds = Dataset.from_dict({"idx": list(range(len(train_records)))})
    val_ds = (Dataset.from_dict({"idx": list(range(len(train_records), len(all_records)))})
              if val_collator_records else None)
    args = sft_config(cfg, tdir, val_ds is not None, progress)
    trainer = _weighted_trainer(SFTTrainer)(
        model=peft_model, args=args, train_dataset=train_ds, eval_dataset=val_ds, data_collator=collator,
        processing_class=model.processor, callbacks=_callbacks(model, stop_after_steps),
        optimizers=(optimizer(model, peft_model, args, float(getattr(cfg, "rae_lr_scale", 1.0))), None))
    _quiet(trainer, progress)
    dist.barrier()  # under a launch: rank 0's last checkpoint (with its trainables) complete before any rank reads it
    last = get_last_checkpoint(str(tdir)) if resume and tdir.is_dir() else None
    if last:
        _load_trainables(model, last)
        log(f"[stage2] phase {phase}: resuming from {last}")
    t0 = time.time()
    try:
        with warnings.catch_warnings():  # transformers' own deprecation notices from inside Trainer
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            trainer.train(resume_from_checkpoint=last)
    finally:
        if "forward" in vars(qwen):  # TRL's fused-LM-head patch: restore the class forward
            del qwen.forward
    seconds = time.time() - t0
    merged = peft_model.merge_and_unload()
    if "forward" in vars(merged):
        del merged.forward
    model.backbone.model = merged
    if bool(cfg.gradient_checkpointing):
        off = getattr(merged, "activation_checkpointing_disable", None) or merged.gradient_checkpointing_disable
        off()
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    model.set_trainable(False)
    history = list(trainer.state.log_history)
    lora_meta = dict(model.meta.get("lora") or {"r": int(cfg.lora_r), "targets": list(cfg.lora_targets), "phases": []})
    lora_meta["phases"] = list(lora_meta.get("phases", [])) + [layers]
    model.meta["lora"] = lora_meta
    model.meta.setdefault("phases", [])
    model.meta["phases"] = [p for p in model.meta["phases"] if p != phase] + [phase]

    if trainer.is_world_process_zero():  # one writer under `accelerate launch`
        atomic_write_json(out / "history.json", {"log": history, "best_checkpoint": trainer.state.best_model_checkpoint,
                                                 "steps": trainer.state.global_step, "seconds": seconds})
    final = out / "final"
    if trainer.is_world_process_zero():  # one writer under `accelerate launch`
        save_model(model, final, {"phase": phase, **(meta or {})}, storage=getattr(cfg, "checkpoints", "delta"))
    trainer.accelerator.wait_for_everyone()
    return PhaseResult(final, history, trainer.state.best_model_checkpoint, int(trainer.state.global_step), seconds,
                       last)


# -- evaluation ---------------------------------------------------------------------------------------


# -- notebook 03: the whole stage in one call -----------------------------------------------------------


def loss_curves(history: Sequence[dict]) -> dict[str, np.ndarray]:
    """{"step", "loss", "eval_step", "eval_loss"} arrays from a Trainer log history."""
    tr = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    ev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    return {"step": np.array([s for s, _ in tr]), "loss": np.array([l for _, l in tr]),
            "eval_step": np.array([s for s, _ in ev]), "eval_loss": np.array([l for _, l in ev])}


