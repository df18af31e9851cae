"""Stage 2: the RAE, the three prompt tokens and LoRA, trained with TRL's SFTTrainer in two phases.

The paper's recipe (section 4.1): load the best AHD; LoRA r 16, alpha 32, dropout 0.05 on the
decoder's q_proj / v_proj only (the ViT's attention is `qkv`, so it is never touched); trainable:
RAE, the three new token rows, LoRA. Phase A on the all-object corpus with LoRA on every decoder
layer; merge; phase B on the anomaly-focused corpus with a fresh LoRA on the last four layers;
merge. After each phase a self-contained checkpoint (`tvad.model.save_model`) that `tvad.load` restores.

    clips = ClipStore(model, resolver, run.dir / "stage2" / "clips")       # V + heatmap per clip, cached
    res = train_phase(model, "a", train_a, val_a, clips, cfg.stage2, out / "phase_a")
    res = train_phase(model, "b", train_b, val_b, clips, cfg.stage2, out / "phase_b")
    metrics, preds = evaluate_dialogues(model, test_records, clips)

The collator applies Qwen2.5-VL's chat template (the clip in the first user turn, the prompt
block before the video tokens), masks every label except the assistant answers, and hands over
`video_grid_thw`, `mm_token_type_ids`, `second_per_grid_ts`, the cached AHD heatmaps and either
`pixel_values_videos` (`stage2.video_input = "pixels"`: the frozen ViT runs every step) or the
cached merged video tokens (`"embeds"`: the same numbers, computed once); with
`stage2.yes_no_weight` != 1 also per-token loss weights (the "Yes"/"No" word of each yes/no answer),
which the trainer's loss applies. A killed phase resumes
from its last Trainer checkpoint (LoRA, optimizer, scheduler, RNG + `tvad_trainables.safetensors`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from tvad.model import build_model, load, save_model, vision_hash
from tvad.model.tvad import HEATMAP_KWARG, VIDEO_EMBEDS_KWARG, ClipInputs, TVAD, TVADError

TRAINABLES_FILE = "tvad_trainables.safetensors"
TOKEN_WEIGHTS = "token_weights"  # collator key: (B, S) per-token loss weights (only when yes_no_weight != 1)


class ClipMissing(TVADError):
    """A corpus record whose clip cannot be found any more."""


class Killed(RuntimeError):
    """Raised by `train_phase(..., stop_after_steps=k)` to simulate a kill (tests)."""


# -- clips ------------------------------------------------------------------------------------------

class ClipResolver:
    """A corpus clip reference ({name, source_video, frame_indices, num_frames, path, ...}) -> uint8
    frames. Looks, in order: an array given by clip name; a video record (tvad.data) named like
    the clip (all its frames) or like its source video (the clip's frame indices); the file at
    `path`. Nothing found: `ClipMissing` naming the clip."""

    def __init__(self, videos: Sequence[Any] | Mapping[str, Any] = (), arrays: Mapping[str, np.ndarray] | None = None):
        if isinstance(videos, Mapping):
            self.videos = dict(videos)
        else:
            self.videos = {str(getattr(v, "name", "")): v for v in videos}
        self.arrays = dict(arrays or {})

    def record(self, clip: Mapping[str, Any]) -> tuple[Any, list[int] | None] | None:
        """The clip's video record and the frame indices to read from it (None: all its frames): the
        record named like the clip, else its source video at the clip's frame indices; None if neither."""
        n = int(clip.get("num_frames", 0))
        idx = [int(i) for i in clip.get("frame_indices", [])]
        v = self.videos.get(str(clip.get("name", "")))
        if v is not None:
            return v, (None if int(getattr(v, "num_frames", n)) == n or not idx else idx)
        src = self.videos.get(str(clip.get("source_video", "")))
        return (src, idx) if src is not None and idx else None

    def __call__(self, clip: Mapping[str, Any]) -> np.ndarray:
        name = str(clip.get("name", ""))
        n = int(clip.get("num_frames", 0))
        idx = [int(i) for i in clip.get("frame_indices", [])]
        if name in self.arrays:
            return np.asarray(self.arrays[name])
        found = self.record(clip)
        if found is not None:
            v, pick = found
            return np.asarray(v.read_frames(pick))
        p = Path(str(clip.get("path") or ""))
        if str(clip.get("path") or "") and p.is_file():
            from tvad.data.video import probe, read_frames

            total = probe(p).num_frames
            if total == n or not idx:
                return np.asarray(read_frames(p))
            if idx and max(idx) < total:
                return np.asarray(read_frames(p, indices=idx))
        raise ClipMissing(f"clip {name!r} (source {clip.get('source_video')!r}, path {clip.get('path')!r}) is gone: "
                          "no such video record, array or file")

    def masks(self, clip: Mapping[str, Any]) -> np.ndarray:
        """(T, H, W) int ground-truth masks of the clip's anomalous objects (0: normal pixel), from its
        video record (`tvad.data`: named like the clip, or its source video at the clip's frame
        indices), resized to the clip's recorded size. No record, or one without pixel masks:
        `ClipMissing` naming the clip (arrays and bare files carry no masks)."""
        from tvad.data.clips import resize_masks

        name = str(clip.get("name", ""))
        n = int(clip.get("num_frames", 0))
        found = self.record(clip)
        if found is None:
            raise ClipMissing(f"clip {name!r}: ground-truth masks need its video record (tvad.data); "
                              f"none is known for it or its source {clip.get('source_video')!r}")
        v, pick = found
        if not getattr(v, "has_masks", True):
            raise ClipMissing(f"clip {name!r}: its video {getattr(v, 'name', '?')!r} has no pixel masks")
        m = np.asarray(v.read_masks(pick))
        if n and len(m) != n:
            raise ClipMissing(f"clip {name!r}: {len(m)} mask frames found, the corpus says {n}")
        size = clip.get("size")
        return resize_masks(m, size) if size else m


def ground_truth_heatmap(masks: np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(N, H, W) masks (nonzero: anomalous) -> (T, h, w) float32 in [0, 1] on a heatmap's grid
    `shape` = (T, h, w): frames paired as the temporal patch pairs them (`pair_merge`, the AHD's
    training target for eq. 7), then each patch's fraction of anomalous pixels (area pooling)."""
    import torch.nn.functional as F

    from tvad.model.ahd import pair_merge

    m = pair_merge(torch.as_tensor(np.asarray(masks)))
    T, h, w = (int(x) for x in shape)
    if m.shape[0] != T:
        raise ValueError(f"{len(masks)} mask frames give {m.shape[0]} temporal steps; the heatmap has {T}")
    return F.adaptive_avg_pool2d(m.float()[None], (h, w))[0]


class ClipStore:
    """Per clip, the frozen parts' outputs (the AHD heatmap and, unless `video_embeds=False`, the
    merged video tokens V), computed once with `model.encode_clip` and cached as safetensors under
    `root` (key: clip, vision tower, AHD weights, switches, video token budget), held in memory after
    the first read. The model (`store.model`) may be swapped, but not for one of another budget.
    With `pixels=True` each `get` also carries the processor's pixel values (recomputed from the
    frames, never cached: for the 7B they are large)."""

    def __init__(self, model: TVAD, resolver: Callable[[Mapping], np.ndarray], root: str | os.PathLike | None = None,
                 video_embeds: bool = True, pixels: bool = False):
        self.model = model
        self.resolver = resolver
        self.root = Path(root) if root is not None else None
        self.video_embeds = video_embeds
        self.pixels = pixels
        self._mem: dict[str, ClipInputs] = {}
        h = hashlib.sha256(vision_hash(model.qwen).encode())
        if model.ahd is not None:
            for k, v in sorted(model.ahd.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().float().cpu().numpy().tobytes())
        h.update(f"{model.use_ahd}|{model.backbone.max_pixels}|{model.layers}".encode())
        self.video_max_tokens = model.video_max_tokens
        if self.video_max_tokens is not None:  # no budget: the key of caches made before budgets existed
            h.update(f"|video_max_tokens={self.video_max_tokens}".encode())
        self.identity = h.hexdigest()[:16]
        self.computed = 0

    def key(self, clip: Mapping) -> str:
        d = {k: clip.get(k) for k in ("name", "source_video", "frame_indices", "num_frames", "fps", "path", "size")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def fps(self, clip: Mapping) -> float:
        return float(clip.get("fps") or self.model.fps)

    def frames(self, clip: Mapping) -> np.ndarray:
        """The clip's frames, resized to the clip's recorded size when the source differs."""
        f = np.asarray(self.resolver(clip))
        if f.ndim != 4:
            raise ClipMissing(f"clip {clip.get('name')!r}: frames of shape {f.shape}, expected (T, H, W, 3)")
        if len(f) != int(clip.get("num_frames", len(f))):
            raise ClipMissing(f"clip {clip.get('name')!r}: {len(f)} frames found, the corpus says "
                              f"{clip.get('num_frames')}")
        size = clip.get("size")
        if size and tuple(int(x) for x in size) != tuple(f.shape[1:3]):
            from tvad.data.video import resize_frames

            f = resize_frames(f, (int(size[0]), int(size[1])))
        return f

    def get(self, clip: Mapping) -> ClipInputs:
        if self.model.video_max_tokens != self.video_max_tokens:
            raise TVADError(f"this clip store holds clips under video_max_tokens={self.video_max_tokens}, the model "
                            f"uses {self.model.video_max_tokens}: make a new ClipStore for it")
        k = self.key(clip)
        c = self._mem.get(k) or self._read(k)
        if c is None or (self.video_embeds and c.video_embeds is None):
            c = self.model.encode_clip(self.frames(clip), self.fps(clip))
            if not self.video_embeds:
                c.video_embeds = None
            self.computed += 1
            self._write(k, c, clip)
        self._mem[k] = c
        if self.pixels:
            inp = self.model.preprocess(self.frames(clip), self.fps(clip))
            return ClipInputs(**{**c.__dict__, "pixel_values": inp["pixel_values_videos"]})
        return c

    def _path(self, k: str) -> Path | None:
        return None if self.root is None else self.root / self.identity / f"{k}.safetensors"

    def _read(self, k: str) -> ClipInputs | None:
        p = self._path(k)
        if p is None or not p.exists():
            return None
        from safetensors.torch import load_file

        try:
            t = load_file(str(p))
            m = json.loads(bytes(t.pop("meta").tolist()).decode()) if "meta" in t else {}
        except Exception:  # truncated or foreign file: recompute
            return None
        return ClipInputs(video_embeds=t.get("video_embeds"), heat=t["heat"], grid_thw=t["grid_thw"],
                          second_per_grid_ts=t["second_per_grid_ts"], num_frames=int(m.get("num_frames", 0)),
                          video_id=str(m.get("video_id", "")))

    def _write(self, k: str, c: ClipInputs, clip: Mapping) -> None:
        p = self._path(k)
        if p is None:
            return
        from safetensors.torch import save_file

        p.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"num_frames": c.num_frames, "video_id": c.video_id, "clip": clip.get("name")}).encode()
        t = {"heat": c.heat.contiguous(), "grid_thw": c.grid_thw.cpu().contiguous(),
             "second_per_grid_ts": c.second_per_grid_ts.cpu().contiguous(),
             "meta": torch.tensor(list(meta), dtype=torch.uint8)}
        if c.video_embeds is not None:
            t["video_embeds"] = c.video_embeds.detach().cpu().contiguous()
        tmp = p.with_name(p.name + ".tmp")
        save_file(t, str(tmp))
        os.replace(tmp, p)


class HeatmapView:
    """A `ClipStore` whose clips carry another heatmap; everything else (video tokens, grid, the
    store's model and settings) is the store's.

    "zeros":        all-zero heatmaps (Table 4's "w/o AHD" at inference).
    "ground_truth": the clip's anomaly masks on the heatmap's grid (`ground_truth_heatmap`): an
                    oracle AHD. A model trained and evaluated on it bounds what stage 2 makes of
                    heatmaps, which separates the AHD's quality from stage 2's reading of it
                    (`stage2.oracle`; a diagnostic, not the paper's method). Needs `resolver.masks`.
    """

    SOURCES = ("zeros", "ground_truth")

    def __init__(self, store: ClipStore, source: str, resolver: ClipResolver | None = None):
        if source not in self.SOURCES:
            raise ValueError(f"heatmap source must be one of {self.SOURCES}, got {source!r}")
        if source == "ground_truth" and resolver is None:
            raise ValueError("ground-truth heatmaps need the clip resolver (for the masks)")
        self.__dict__.update(store=store, source=source, resolver=resolver, _heat={})

    def get(self, clip: Mapping) -> ClipInputs:
        import dataclasses

        c = self.store.get(clip)
        if self.source == "zeros":
            return dataclasses.replace(c, heat=torch.zeros_like(c.heat))
        k = self.store.key(clip)
        if k not in self._heat:
            self._heat[k] = ground_truth_heatmap(self.resolver.masks(clip), c.heat.shape)
        return dataclasses.replace(c, heat=self._heat[k].clone())

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def __setattr__(self, name: str, value) -> None:  # e.g. the collator's `clips.pixels = True`
        setattr(self.store, name, value)


# -- the collator -------------------------------------------------------------------------------------

class Collator:
    """{"idx": i} rows -> a padded batch for the Qwen forward (+ heatmaps / video tokens for the hook)."""

    def __init__(self, model: TVAD, records: Sequence[dict], clips: ClipStore, max_length: int | None = 2048,
                 video_input: str = "embeds", yes_no_weight: float = 1.0):
        if video_input not in ("embeds", "pixels"):
            raise ValueError(f"video_input must be 'embeds' or 'pixels', got {video_input!r}")
        if not yes_no_weight > 0:
            raise ValueError(f"yes_no_weight must be > 0, got {yes_no_weight}")
        self.model, self.records, self.clips = model, list(records), clips
        self.max_length, self.video_input, self.yes_no_weight = max_length, video_input, float(yes_no_weight)
        if video_input == "pixels":
            self.clips.pixels = True

    def encode(self, rec: dict):
        clip = self.clips.get(rec["clip"])
        return self.model.encode(rec["messages"], clip, max_length=self.max_length), clip

    def __call__(self, features: Sequence[Mapping]) -> dict:
        recs = [self.records[int(f["idx"])] for f in features]
        items = [self.encode(r) for r in recs]
        B, L = len(items), max(len(e.input_ids) for e, _ in items)
        pad = self.model.tokenizer.pad_token_id
        ids = torch.full((B, L), int(pad), dtype=torch.long)
        att = torch.zeros((B, L), dtype=torch.long)
        lab = torch.full((B, L), -100, dtype=torch.long)
        mm = torch.zeros((B, L), dtype=torch.int32)
        wts = torch.ones((B, L), dtype=torch.float32) if self.yes_no_weight != 1.0 else None
        for b, (e, _) in enumerate(items):  # right padding
            n = len(e.input_ids)
            ids[b, :n], att[b, :n], lab[b, :n], mm[b, :n] = e.input_ids, 1, e.labels, e.mm_token_type_ids
            if wts is not None:
                wts[b, :n] = yes_no_weights(e.labels, recs[b].get("turns", []), self.yes_no_weight)
        batch = {"input_ids": ids, "attention_mask": att, "labels": lab, "mm_token_type_ids": mm,
                 "video_grid_thw": torch.cat([c.grid_thw for _, c in items]).long(),
                 "second_per_grid_ts": torch.cat([c.second_per_grid_ts for _, c in items]).float()}
        if self.model.use_rae:
            batch[HEATMAP_KWARG] = [c.heat for _, c in items]
        if self.video_input == "pixels":
            batch["pixel_values_videos"] = torch.cat([c.pixel_values for _, c in items])
        else:
            batch[VIDEO_EMBEDS_KWARG] = [c.video_embeds for _, c in items]
        if wts is not None:
            batch[TOKEN_WEIGHTS] = wts
        return batch


def answer_starts(labels: torch.Tensor) -> list[int]:
    """Positions of the first supervised token of each assistant answer: labels (S,) -> one index
    per answer (an answer and its <|im_end|> are one run of labels != -100, user turns part them)."""
    on = (labels != -100).tolist()
    return [i for i, x in enumerate(on) if x and (i == 0 or not on[i - 1])]


def yes_no_weights(labels: torch.Tensor, turns: Sequence[Mapping], weight: float) -> torch.Tensor:
    """(S,) loss weights: `weight` at the first token ("Yes" / "No") of every answer whose corpus turn
    is a yes/no question, 1 elsewhere. `turns` are the record's turns, one per assistant answer
    (answers cut off by max_length simply have no weight to carry)."""
    w = torch.ones(labels.shape, dtype=torch.float32)
    for start, turn in zip(answer_starts(labels), turns):
        if turn.get("type") == "yes_no":
            w[start] = float(weight)
    return w


# -- corpus -------------------------------------------------------------------------------------------

def load_records(path: str | os.PathLike) -> list[dict]:
    """A corpus file (validated by the corpus's own schema check)."""
    from tvad.corpus import load_corpus

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: corpus file missing (notebook 01 writes the corpora into the run dir)")
    return load_corpus(p)


def check_clips(records: Sequence[dict], clips: ClipStore, progress: bool = False, desc: str = "clips") -> None:
    """Compute (or read) every record's clip now: a missing clip fails here, with the record's id."""
    from tqdm.auto import tqdm

    for r in tqdm(list(records), desc=desc, disable=not progress):
        try:
            clips.get(r["clip"])
        except ClipMissing as e:
            raise ClipMissing(f"corpus record {r.get('id')!r}: {e}") from e


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
    from safetensors.torch import load_file

    f = Path(ckpt) / TRAINABLES_FILE
    if not f.exists():
        raise FileNotFoundError(f"{ckpt}: no {TRAINABLES_FILE} (RAE / token rows) in this checkpoint")
    st = load_file(str(f))
    with torch.no_grad():
        model.injector.token_rows.copy_(st["token_rows"].to(model.injector.token_rows.device))
        if model.rae is not None:
            model.rae.load_state_dict({k[4:]: v for k, v in st.items() if k.startswith("rae.")})


def _callbacks(model: TVAD, stop_after_steps: int | None):
    from safetensors.torch import save_file
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
    import torch.nn.functional as F

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
    import dataclasses

    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    steps = max(1, int(cfg.eval_steps))
    kw = dict(
        output_dir=str(out_dir), num_train_epochs=float(cfg.epochs), per_device_train_batch_size=int(cfg.batch_size),
        per_device_eval_batch_size=int(cfg.batch_size), gradient_accumulation_steps=int(cfg.grad_accum),
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
    from tvad.io import atomic_write_json

    atomic_write_json(out / "history.json", {"log": history, "best_checkpoint": trainer.state.best_model_checkpoint,
                                             "steps": trainer.state.global_step, "seconds": seconds})
    final = out / "final"
    if trainer.is_world_process_zero():  # one writer under `accelerate launch`
        save_model(model, final, {"phase": phase, **(meta or {})})
    trainer.accelerator.wait_for_everyone()
    return PhaseResult(final, history, trainer.state.best_model_checkpoint, int(trainer.state.global_step), seconds,
                       last)


# -- evaluation ---------------------------------------------------------------------------------------

def evaluate_dialogues(model: TVAD, records: Sequence[dict], clips: ClipStore,
                       max_new_tokens: int | Mapping[str, int] = 96,
                       types: Sequence[str] = ("yes_no", "target", "trajectory"), progress: bool = False
                       ) -> tuple[dict[str, float], list[dict]]:
    """Answer every turn of `types` in `records` (previous turns: the reference answers), then
    Yes/No accuracy (and balanced accuracy), Target and Trajectory BLEU-4 (best reference, macro
    over clips). `max_new_tokens`: one limit, or one per turn type. Returns (metrics, predictions)."""
    from tqdm.auto import tqdm

    from tvad.evaluate import dialogue_metrics

    preds: list[dict] = []
    todo = [(r, i, t) for r in records for i, t in enumerate(r["turns"]) if t["type"] in types]
    for r, i, t in tqdm(todo, desc="answers", disable=not progress):
        clip = clips.get(r["clip"])
        msgs = r["messages"][: 2 + 2 * i]  # system, earlier (reference) turns, this question
        n = max_new_tokens.get(t["type"], 96) if isinstance(max_new_tokens, Mapping) else int(max_new_tokens)
        ans = model.answer(msgs, clip, n)
        preds.append({"id": r["id"], "turn": i, "type": t["type"], "kind": t.get("kind"),
                      "question": msgs[-1]["content"], "answer": ans, "references": t["references"],
                      "truth": t.get("truth"), "label": r["clip"].get("label")})
    return dialogue_metrics(preds), preds


# -- notebook 03: the whole stage in one call -----------------------------------------------------------

VARIANTS = ("rae", "no_rae")  # trained on the same data for the same steps; "backbone" is the untrained one
MAX_NEW_TOKENS = {"yes_no": 8, "target": 48}  # per answer type (only the leading word of a Yes/No counts)


@dataclass
class Stage2Outputs:
    results: dict  # the flat result keys written to results/03_rae_sft.json
    histories: dict  # {variant: {phase: Trainer log history}}
    predictions: dict  # {variant: [prediction dicts]} on the test dialogues
    final_dirs: dict  # {variant: Path} the phase-B checkpoints
    test_records: list  # the held-out dialogues (phase B, test split)
    clips: ClipStore  # heatmaps and video tokens of every clip used
    seconds: dict  # wall time per part
    judgements: dict = field(default_factory=dict)  # {variant: {split: judgement_scores rows}}; the full
    #                                                  model's with all-zero heatmaps under "rae_zero_heatmaps"


def corpus_records(run) -> dict[str, list[dict]]:
    """{"a.train", "a.val", "b.train", "b.val"}: the corpora notebook 01 wrote into the run dir."""
    d = run.dir / "corpus"
    return {f"{ph}.{sp}": load_records(d / f"phase_{ph}.{sp}.jsonl") for ph in ("a", "b") for sp in ("train", "val")}


def test_records(run, videos: Sequence[Any], force: bool = False, seed: int = 0, split: str = "test") -> list[dict]:
    """Phase-B dialogues of the held-out clips of `split` ("test", or the synthetic "test_seen"), built
    like the training corpus (oracle annotator) into `stage2/<split>_corpus` (the corpora hold train
    and val only). Rebuilt on every call, as notebook 01 rebuilds the training corpora: under a
    second with the folder's frame cache, and a set written by older dialogue rules is never reused.
    `force` also drops that cache."""
    import shutil

    from tvad.corpus import build_corpora

    d = run.dir / "stage2" / f"{split}_corpus"
    if force and d.exists():
        shutil.rmtree(d)
    build_corpora({"validation": list(videos)}, d, annotator="oracle", seed=seed)
    return load_records(d / "phase_b.val.jsonl")


def evaluate_model(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int = 96,
                   progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """`evaluate_dialogues` with per-type answer lengths (Yes/No 8 tokens: only the leading word
    counts; Target 48; Trajectory `max_new_tokens`)."""
    return evaluate_dialogues(model, records, clips, {**MAX_NEW_TOKENS, "trajectory": int(max_new_tokens)},
                              progress=progress)


@torch.no_grad()
def judgement_scores(model: TVAD, records: Sequence[dict], clips: ClipStore,
                     zero_heatmaps: bool = False) -> list[dict]:
    """Does the answer rest on the heatmap? For each record's clip-level judgement ("Is there any
    anomaly in this video?"), the teacher-forced p_yes = P(Yes) / (P(Yes) + P(No)) of the answer's
    first token, given the dialogue up to that question. `zero_heatmaps=True` feeds the RAE an
    all-zero heatmap instead of the AHD's (Table 4's "w/o AHD" at inference), so the gap between the
    two shows how much the judgement reads the heatmap. Returns [{"id", "truth", "p_yes"}]."""
    if zero_heatmaps:
        clips = HeatmapView(clips, "zeros")
    tok = model.tokenizer
    yes, no = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    out = []
    for r in records:
        users = [k for k, m in enumerate(r["messages"]) if m["role"] == "user"]
        for i, t in enumerate(r["turns"]):
            if t.get("kind") != "judgement" or i >= len(users):
                continue
            clip = clips.get(r["clip"])
            logits = model.forward(r["messages"][:users[i] + 1], clip, labels=False,
                                   add_generation_prompt=True).logits[0, -1]
            p = logits[[yes, no]].float().softmax(-1)
            out.append({"id": r["id"], "truth": str(t["truth"]), "p_yes": float(p[0])})
    return out


def judgement_auroc(scores: Sequence[Mapping]) -> float | None:
    """ROC-AUC of p_yes against the truth over `judgement_scores` rows (0.5: the judgement does not
    separate anomalous from normal clips); None with one class only."""
    from sklearn.metrics import roc_auc_score

    y = [s["truth"] == "yes" for s in scores]
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, [s["p_yes"] for s in scores]))


class torch_threads:
    """Set torch's intra-op threads for a block (CPU only; n <= 0 or on GPU: unchanged)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.old: int | None = None

    def __enter__(self):
        if self.n > 0 and not torch.cuda.is_available():
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            torch.set_num_threads(self.old)
        return False


def run_stage2(run, force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
               variants: Sequence[str] = VARIANTS) -> Stage2Outputs:
    """Notebook 03 in one call (see `_run_stage2`), with `stage2.cpu_threads` torch threads on CPU."""
    with torch_threads(getattr(run.config.stage2, "cpu_threads", 0)):
        return _run_stage2(run, force, progress, log, variants)


def _run_stage2(run, force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
                variants: Sequence[str] = VARIANTS) -> Stage2Outputs:
    """Notebook 03 in one call: corpora and held-out dialogues, the frozen backbone + best AHD,
    phase A -> merge -> phase B -> merge for the full model ("rae"), the same without RAE ("no_rae")
    and, with `stage2.oracle`, the full model on ground-truth heatmaps ("rae_oracle"), each skipped
    when its checkpoint exists (unless `force`; a killed phase resumes), then the dialogue metrics of
    each and of the untrained backbone on every held-out split, and the judgement scores."""
    import shutil

    from tvad.model.detector import find_checkpoint
    from tvad.io import atomic_write_json
    from tvad.data import load_split

    cfg = run.config
    s2 = cfg.stage2
    out = run.dir / "stage2"
    seconds: dict[str, float] = {}
    t0 = time.time()
    recs = corpus_records(run)
    videos = {k: list(load_split(cfg.data, s, root=run.resolve(cfg.data.root), seed=cfg.seed))
              for k, s in (("train", "train"), ("val", "validation"))}
    # Every held-out dialogue set the model is scored on: "test" (the contract, Table 3), and beside it
    # the validation dialogues (for choosing stage-2 settings without looking at test) and, where the
    # dataset has them, new videos of the training anomaly types ("test_seen", synthetic only).
    heldout: dict[str, list[dict]] = {}
    for split in dict.fromkeys(["test", *s2.eval_splits]):
        if split == "val":
            heldout["val"] = recs["b.val"]
            continue
        videos[split] = list(load_split(cfg.data, split, root=run.resolve(cfg.data.root), seed=cfg.seed))
        heldout[split] = test_records(run, videos[split], force=force, seed=cfg.seed, split=split)
    test = heldout["test"]
    resolver = ClipResolver([v for vs in videos.values() for v in vs])
    first = next(r for k in ("b.train", "a.train") for r in recs[k])
    meta = {"fps": float(first["clip"].get("fps") or cfg.data.clip_fps or 1.0),
            "system_prompt": first["messages"][0]["content"] if first["messages"][0]["role"] == "system" else None,
            "config": cfg.to_dict()}
    log("[stage2] corpora: " + ", ".join(f"{k} {len(v)}" for k, v in recs.items()) + f"; test dialogues {len(test)}")
    ahd_dir = find_checkpoint(run.dir)
    seconds["data"] = time.time() - t0

    results: dict[str, Any] = {}
    histories: dict[str, dict] = {}
    predictions: dict[str, list] = {}
    finals: dict[str, Path] = {}
    judgements: dict[str, dict] = {}
    clips: ClipStore | None = None
    if s2.oracle and "rae_oracle" not in variants:
        variants = [*variants, "rae_oracle"]
    for variant in list(variants) + ["backbone"]:
        t1 = time.time()
        vdir = out / variant
        if force and vdir.exists():
            shutil.rmtree(vdir)
        a_final, b_final = vdir / "phase_a" / "final", vdir / "phase_b" / "final"
        histories[variant] = {}
        if variant == "backbone":
            model = build_model(cfg, ahd_dir, use_rae=False, meta=meta)  # untrained: no prompts, no LoRA
        elif (b_final / "tvad.json").exists():
            model = load(b_final)
            log(f"[stage2] {variant}: found {b_final}")
        else:
            model = (load(a_final) if (a_final / "tvad.json").exists()
                     else build_model(cfg, ahd_dir, use_rae=(variant != "no_rae"), meta={**meta, "variant": variant}))
        if clips is None:
            clips = ClipStore(model, resolver, out / "clips", video_embeds=s2.video_input == "embeds")
            t2 = time.time()
            for k in ("a.train", "a.val", "b.train", "b.val"):
                check_clips(recs[k], clips, progress=progress, desc=f"clips {k}")
            for split, rs in heldout.items():
                if split != "val":
                    check_clips(rs, clips, progress=progress, desc=f"clips {split}")
            seconds["clips"] = time.time() - t2
        clips.model = model
        # rae_oracle reads the clips' ground-truth masks where the others read the AHD's heatmaps
        vclips = HeatmapView(clips, "ground_truth", resolver) if variant == "rae_oracle" else clips
        if variant != "backbone":
            for ph in ("a", "b"):
                fin = vdir / f"phase_{ph}" / "final"
                if (fin / "tvad.json").exists():
                    hist = vdir / f"phase_{ph}" / "history.json"
                    histories[variant][ph] = json.loads(hist.read_text())["log"] if hist.exists() else []
                    continue
                log(f"[stage2] {variant}: phase {ph.upper()} on {len(recs[ph + '.train'])} dialogues")
                res = train_phase(model, ph, recs[f"{ph}.train"], recs[f"{ph}.val"], vclips, s2, vdir / f"phase_{ph}",
                                  resume=True, progress=progress, meta={"variant": variant}, log=log)
                histories[variant][ph] = res.history
                results[f"{variant}.phase_{ph}.steps"] = res.steps
                results[f"{variant}.phase_{ph}.seconds"] = res.seconds
                evals = [h["eval_loss"] for h in res.history if "eval_loss" in h]
                if evals:
                    results[f"{variant}.phase_{ph}.best_val_loss"] = float(min(evals))
            finals[variant] = b_final
        seconds[f"{variant}.train"] = time.time() - t1
        t1 = time.time()
        for split, rs in heldout.items():
            m, preds = evaluate_model(model, rs, vclips, s2.eval_max_new_tokens, progress=progress)
            for k, v in m.items():
                results[f"{variant}.{split}.{k}"] = v
            atomic_write_json(out / f"{variant}.{split}_predictions.json", preds)  # test: read by notebook 04
            if split == "test":
                predictions[variant] = preds
                log(f"[stage2] {variant}: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items() if isinstance(v, float)))
        # Does the clip-level judgement rest on the heatmap? p(Yes) on every split's judgements (the
        # training dialogues too), and for the full model again with all-zero heatmaps.
        runs = [(variant, False, "judgement_auroc")]
        if variant == "rae":
            runs.append(("rae_zero_heatmaps", True, "judgement_auroc_zero_heatmaps"))
        for name, zero, key in runs:
            judgements[name] = {split: judgement_scores(model, rs, vclips, zero_heatmaps=zero)
                                for split, rs in {"train": recs["b.train"], **heldout}.items()}
            for split, sc in judgements[name].items():
                auc = judgement_auroc(sc)
                if auc is not None:
                    results[f"{variant}.{split}.{key}"] = auc
        seconds[f"{variant}.eval"] = time.time() - t1
        counts = model.parameter_counts(lora={"r": int(s2.lora_r), "targets": list(s2.lora_targets),
                                              "phases": [None, lora_layers(model, "b", s2.phase_b_last_layers)]}
                                        if variant != "backbone" else {"phases": []})
        for k, v in counts.items():
            results[f"params.{variant}.{k}"] = int(v)
        del model
    seconds["total"] = time.time() - t0
    results.update({f"timing.{k}_s": v for k, v in seconds.items()})
    for split, rs in heldout.items():
        results[f"stage2.{split}_dialogues"] = len(rs)
    run.write_results("03_rae_sft", results)
    return Stage2Outputs(results, histories, predictions, finals, test, clips, seconds, judgements)


def loss_curves(history: Sequence[dict]) -> dict[str, np.ndarray]:
    """{"step", "loss", "eval_step", "eval_loss"} arrays from a Trainer log history."""
    tr = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    ev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    return {"step": np.array([s for s, _ in tr]), "loss": np.array([l for _, l in tr]),
            "eval_step": np.array([s for s, _ in ev]), "eval_loss": np.array([l for _, l in ev])}


def example_dialogue(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int = 96,
                     name: str | None = None) -> dict:
    """The model's own multi-turn dialogue (its answers become the history) on one held-out
    abnormal clip, with the clip's frames and upsampled heatmap for display:
    {"id", "frames" (N, H, W, 3), "heat" (N, H, W), "turns": [{"question", "answer", "reference", "type"}]}."""
    from tvad.model.ahd import AHD

    cands = [r for r in records if (name is None and r["clip"].get("label")) or r["clip"]["name"] == name]
    if not cands:
        cands = list(records)
    if not cands:
        raise ValueError("no dialogue to show")
    rec = cands[0]
    clip = clips.get(rec["clip"])
    frames = clips.frames(rec["clip"])
    heat = AHD.upsample(clip.heat, frames.shape[1:3]).repeat_interleave(2, 0)[: len(frames)].numpy()
    msgs = [rec["messages"][0]]
    turns = []
    for i, t in enumerate(rec["turns"]):
        q = rec["messages"][1 + 2 * i]
        ans = model.answer(msgs + [q], clip, MAX_NEW_TOKENS.get(t["type"], max_new_tokens))
        msgs += [q, {"role": "assistant", "content": ans}]
        turns.append({"question": q["content"], "answer": ans, "reference": t["references"][0], "type": t["type"]})
    return {"id": rec["id"], "frames": frames, "heat": heat, "turns": turns}
