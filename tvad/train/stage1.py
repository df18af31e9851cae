"""Stage 1: train the Anomaly Heatmap Decoder on cached features of the frozen backbone.

The paper's recipe (section 4.1): AdamW, batch 1, gradient accumulation 8, warmup-cosine schedule
(warmup ratio 0.1, peak and floor LR), pixel cross-entropy against pair-merged masks (logical OR
of frames 2t and 2t+1), until convergence, keeping the checkpoint with the best validation
micro-AUC. Optional: Dice term and positive-class weight (deviations when on), frame-level CE.

    samples = prepare(videos, cache)                         # features and merged masks: read from the cache when used
    result = train(ahd, train_samples, val_samples, cfg.stage1, out_dir, eval_cfg=cfg.eval)
    metrics, heat = evaluate(ahd, test_samples, cfg.eval)

Checkpoints (out_dir/last, out_dir/best): ahd.safetensors (weights + class text buffers),
ahd.json (config, backbone identity and layers, metrics), and for `last` the optimizer,
scheduler, RNG state and position in training_state.pt (tensors and plain values only, loaded with
`weights_only=True`: a pickle planted there is refused, never run; written into the new `last` before
it is swapped in). `resume=True` continues from `last`;
the data order of epoch e is a permutation seeded by (seed, e), checkpoints sit on optimizer-step
boundaries, so a killed and resumed run reaches exactly the weights of an uninterrupted one.

`train` runs under Hugging Face accelerate (CPU, one GPU, several processes): on several GPUs, put
the `train(...)` call in a script and start it with `accelerate launch --multi_gpu --num_processes N
your_script.py` (each optimizer step's clips are split across the processes; rank 0 writes the
checkpoints); several CPU processes: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...` (gloo).
Notebook 02 under `tvad pipeline --launcher` does this, with the feature cache filled by rank
(`tvad.train.distributed`, docs/multi-gpu.md).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from tvad.io import atomic_write_json, json_default
from tvad.metrics import macro_auc, micro_auc, operating_point, rbdc_tbdc, regions_from_heatmaps, tracks_from_masks
from tvad.model.ahd import AHD, ahd_loss, frame_scores, heat_to_frames, load_ahd, pair_merge, save_ahd
from tvad.train.coverage import source_sequences
from tvad.train.common import Killed
from tvad.train.features import LazyFeatures, LazyMasks, cache_indices, cache_key, video_name  # noqa: F401 (re-exported)


@dataclass
class Sample:
    """One clip (or video), ready for stage 1: its features and pair-merged masks.

    `prepare` gives Samples that hold no tensors: `features` is a `LazyFeatures` mapping and `masks`
    resolves a `LazyMasks`, both read from the clip's cache file on access (through the cache's
    byte-bounded LRU), so memory does not grow with the number of clips. Plain tensors work too.
    """

    name: str  # unique clip / video name
    features: Mapping[int, torch.Tensor]  # {l: (T, h, w, D_l)} float16 (a dict, or LazyFeatures: read on access)
    masks: torch.Tensor | None  # (T, H, W) bool, pair-merged GT (None: no pixel GT); given as LazyMasks: read on access
    frame_labels: np.ndarray  # (N,) int 0/1 per input frame
    gt_tracks: np.ndarray  # (M, 6) [track, frame, x1, y1, x2, y2] GT regions
    num_frames: int  # N
    frame_size: tuple[int, int]  # (H, W) of the input frames (heatmaps are upsampled to it)
    anomaly_type: str = "normal"  # behaviour type of the anomaly ("normal" if none)
    extra: dict = field(default_factory=dict)


def _get_masks(self) -> torch.Tensor | None:
    m = self.__dict__.get("_masks")
    return m.load() if isinstance(m, LazyMasks) else m


def _set_masks(self, m) -> None:
    self.__dict__["_masks"] = m


Sample.masks = property(_get_masks, _set_masks, doc="(T, H, W) bool pair-merged masks (read on access when lazy)")


def _feature_rows(s: Sample, l: int, a: int, b: int) -> torch.Tensor:
    """(b - a, h, w, D_l) float16 rows [a, b) of block l (a lazy Sample reads only what it needs)."""
    f = s.features
    return f.rows(l, a, b) if isinstance(f, LazyFeatures) else f[l][a:b]


def _num_tokens(s: Sample) -> int:
    """T of a Sample's features, without reading them."""
    f = s.features
    return f.entry.num_tokens if isinstance(f, LazyFeatures) else next(iter(f.values())).shape[0]


def _mask_shape(s: Sample) -> tuple[int, ...]:
    """(T, H, W) of a Sample's masks, without reading them."""
    m = s.__dict__.get("_masks")
    return tuple(m.shape)


# -- data -----------------------------------------------------------------------------------------

def video_anomaly_type(v) -> str:
    t = getattr(v, "anomaly_types", None)
    t = t() if callable(t) else t
    if t:
        return "+".join(sorted({str(x) for x in t}))
    t = getattr(v, "anomaly_type", None)
    if t:
        return str(t)
    types = sorted({str(o.anomaly_type) for o in getattr(v, "objects", []) if getattr(o, "anomaly_type", None)})
    return "+".join(types) if types else "normal"


def prepare(videos: Sequence, cache, fps: float | None = None, progress: bool = True,
            desc: str = "features") -> list[Sample]:
    """Video or clip records (tvad.data: read_frames, read_masks, frame_labels, gt_tracks) -> Samples
    whose features and pair-merged masks stay in `cache`'s files (computed once, masks stored packed
    beside them) and are read when used: one clip's tensors in memory at a time here, and afterwards
    at most the cache's LRU bound (`FeatureCache(memory_bytes=...)`)."""

    out = []
    for v in tqdm(list(videos), desc=desc, disable=not progress):
        name = video_name(v)
        n = int(getattr(v, "num_frames", 0) or len(np.asarray(v.frame_labels)))
        masks = np.asarray(v.read_masks())
        if masks.shape[0] != n:
            raise ValueError(f"{name}: {masks.shape[0]} mask frames for {n} video frames")
        merged = pair_merge(torch.from_numpy(masks))  # (ceil(N/2), H, W) bool
        gt = v.gt_tracks() if callable(getattr(v, "gt_tracks", None)) else tracks_from_masks(masks)
        frame_size = tuple(masks.shape[1:3])
        del masks
        entry = cache.ensure(cache_key(v), cache_indices(v), lambda: np.asarray(v.read_frames()),
                             fps=fps or getattr(v, "fps", None), masks=merged)
        del merged
        out.append(Sample(
            name=name, features=LazyFeatures(entry), masks=LazyMasks(entry),
            frame_labels=np.asarray(v.frame_labels).astype(int), gt_tracks=np.asarray(gt).reshape(-1, 6),
            num_frames=n, frame_size=frame_size, anomaly_type=video_anomaly_type(v), extra={"video": v}))
    return out


def clips(samples: Sequence[Sample], clip_frames: int) -> list[tuple[int, int, int]]:
    """(sample index, first token, end token) of non-overlapping clips of clip_frames frames."""
    if clip_frames < 2 or clip_frames % 2:
        raise ValueError(f"clip_frames must be even and >= 2, got {clip_frames}")
    k = clip_frames // 2
    out = []
    for i, s in enumerate(samples):
        T = _num_tokens(s)
        for a in range(0, T, k):
            out.append((i, a, min(T, a + k)))
    return out


# -- schedule ------------------------------------------------------------------------------------

def warmup_cosine(total_steps: int, warmup_ratio: float, lr: float, min_lr: float) -> Callable[[int], float]:
    """LR multiplier for LambdaLR: linear warmup over warmup_ratio * total, cosine to min_lr."""
    warm = max(1, int(round(warmup_ratio * total_steps)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, total_steps - warm))
        return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))) / lr

    return f


# -- prediction / evaluation ----------------------------------------------------------------------

@torch.no_grad()
def predict(ahd: AHD, sample: Sample, frame_score: str = "max", topk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """heat (N, H, W) float32 in [0, 1] at input resolution, and frame scores (N,); both frames of a
    pair share the pair's map (the last frame of an odd N is the padded pair's first)."""
    ahd.eval()
    dev = ahd.text.device
    out = ahd({l: f.to(dev).float() for l, f in sample.features.items()})
    heat = heat_to_frames(out.heat, sample.frame_size, sample.num_frames)  # (N, H, W), eq. 7 upsampled
    if not torch.isfinite(heat).all():
        raise FloatingPointError(f"{sample.name}: non-finite heatmap")
    sc = frame_scores(heat, frame_score, topk)
    return heat.cpu().numpy().astype(np.float32), sc.cpu().numpy().astype(np.float32)


def evaluate_heatmaps(heat: dict[str, np.ndarray], scores: dict[str, np.ndarray], samples: Sequence[Sample],
                      eval_cfg=None, per_type: bool = False) -> dict[str, float]:
    """micro/macro AUC, RBDC/TBDC and the 0.5 operating point of per-video heatmaps."""

    thr = getattr(eval_cfg, "threshold", 0.5)
    iou = getattr(eval_cfg, "iou", 0.1)
    hit = getattr(eval_cfg, "hit_ratio", 0.1)
    max_fpr = getattr(eval_cfg, "max_fpr", 1.0)
    sigma = getattr(eval_cfg, "sigma", None)
    names = [s.name for s in samples]
    labels = {s.name: s.frame_labels for s in samples}
    res: dict[str, float] = {}
    res["micro_auc"] = _safe(lambda: micro_auc({n: scores[n] for n in names}, labels, sigma=sigma))
    res["macro_auc"] = _safe(lambda: macro_auc({n: scores[n] for n in names}, labels, sigma=sigma))
    dets = {n: regions_from_heatmaps(heat[n], thr) for n in names}
    gts = {s.name: s.gt_tracks for s in samples}
    nf = {s.name: s.num_frames for s in samples}
    rb = _safe(lambda: rbdc_tbdc(dets, gts, nf, iou=iou, hit_ratio=hit, max_fpr=max_fpr), (float("nan"),) * 2)
    res["rbdc"], res["tbdc"] = float(rb[0]), float(rb[1])
    op = _safe(lambda: operating_point(dets, gts, nf, iou=iou, hit_ratio=hit), {})
    for k, v in (op or {}).items():
        res[f"op.{k}"] = float(v)
    if per_type:
        normal = [s.name for s in samples if s.anomaly_type == "normal"]
        types = {t for s in samples for t in s.anomaly_type.split("+")} - {"normal"}
        for t in sorted(types):  # videos with this type (possibly among others) + the normal videos
            sel = [s.name for s in samples if t in s.anomaly_type.split("+")] + normal
            res[f"per_type.{t}.micro_auc"] = _safe(
                lambda: micro_auc({n: scores[n] for n in sel}, {n: labels[n] for n in sel}, sigma=sigma))
    return res


def _safe(fn, default=float("nan")):
    try:
        return fn()
    except ValueError:
        return default


def evaluate(ahd: AHD, samples: Sequence[Sample], eval_cfg=None, frame_score: str = "max", topk: int = 16,
             per_type: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(metrics, {name: heat (N, H, W)}) of the AHD on samples: the metrics per source video over
    the frames its (non-overlapping) clips cover (`tvad.train.coverage`), the heatmaps per sample."""
    heat, scores = {}, {}
    for s in samples:
        heat[s.name], scores[s.name] = predict(ahd, s, frame_score, topk)
    seqs, sheat, sscores = source_sequences(samples, heat, scores)  # clips -> their source videos' covered frames
    return evaluate_heatmaps(sheat, sscores, seqs, eval_cfg, per_type), heat


# -- checkpoints: save_ahd / load_ahd live in tvad.model.ahd (the detector needs them) ----------

def _rng_state() -> dict:
    """The python, numpy and torch RNG states as tensors and plain values (loadable with
    `torch.load(weights_only=True)`: no pickled Python objects)."""
    version, internal, gauss = random.getstate()
    npst = np.random.get_state(legacy=False)
    return {"python": {"version": int(version), "state": [int(v) for v in internal], "gauss": gauss},
            "numpy": {"bit_generator": str(npst["bit_generator"]),
                      "key": torch.from_numpy(np.asarray(npst["state"]["key"], dtype=np.int64)),
                      "pos": int(npst["state"]["pos"]), "has_gauss": int(npst["has_gauss"]),
                      "gauss": float(npst["gauss"])},
            "torch": torch.get_rng_state()}


def _set_rng_state(s: dict) -> None:
    py, npst = s["python"], s["numpy"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np.random.set_state({"bit_generator": npst["bit_generator"],
                         "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
                         "has_gauss": npst["has_gauss"], "gauss": npst["gauss"]})
    torch.set_rng_state(s["torch"])


def _plain(obj):
    """`obj` as plain JSON values (numpy scalars -> floats), as the training state stores it."""
    return json.loads(json.dumps(obj, default=json_default))


class ResumeStateError(ValueError):
    """`resume=True` found a `last` checkpoint whose training state cannot be used: missing (a save
    cut short), refused (not plain tensors and values: a pickle that could run code) or corrupt."""


def _load_training_state(path: Path) -> dict:
    """The training state of a `last` checkpoint, loaded with `weights_only=True` (tensors and plain
    values only: a planted pickle is refused, never run); `ResumeStateError` naming the file otherwise."""
    restart = f"delete {path.parent} to restart stage 1 from step 0"
    try:
        ts = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise ResumeStateError(f"{path}: refused to load: it holds Python objects, not only tensors and plain "
                               f"values (a pickle that could run code, or a state of an older tvad); {restart}") from None
    except Exception as e:  # truncated / garbled zip or pickle
        why = str(e).splitlines()[0].split(". ")[0] if str(e) else "unreadable"
        raise ResumeStateError(f"{path}: corrupt training state ({type(e).__name__}: {why}); {restart}") from None
    need = ("optimizer", "scheduler", "rng", "state", "total")
    if not isinstance(ts, dict) or any(k not in ts for k in need):
        raise ResumeStateError(f"{path}: corrupt training state (expected the keys {', '.join(need)}); {restart}")
    return ts


# -- training ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    history: list[dict]  # per optimizer step: {"step", "epoch", "loss", "lr"}
    val_history: list[dict]  # per validation: {"epoch", "step", metrics...}
    best: dict | None  # the best validation record
    best_dir: Path | None  # checkpoint of the best validation micro-AUC (or the last, without val)
    last_dir: Path  # latest checkpoint
    epoch_seconds: list[float]  # wall time of each epoch's training part


class ResumeMismatch(ValueError):
    """`resume=True` found a `last` checkpoint of another configuration (steps, backbone, AHD)."""


def train(ahd: AHD, train_samples: Sequence[Sample], val_samples: Sequence[Sample], cfg, out_dir: str | os.PathLike,
          eval_cfg=None, meta: dict | None = None, resume: bool = False, frame_score: str = "max", topk: int = 16,
          progress: bool = True, stop_after_steps: int | None = None, checkpoint_every: int = 4,
          log: Callable[[str], None] | None = None, accelerator=None) -> TrainResult:
    """Train `ahd` (in place) with the paper's recipe; `cfg` a Stage1Config.

    accelerator: an `accelerate.Accelerator` (default: a new one, which follows `accelerate launch`
    or the accelerate config); it picks the device (the AHD is moved there). With several processes
    each optimizer step's group of clips is split across them (group[rank::world]) and DDP averages
    the gradients into those of the group's mean loss; checkpoints, validation and history.json are
    written by the main process only. Gradient accumulation stays here (cfg.grad_accum), so the
    accelerator must have gradient_accumulation_steps == 1.
    checkpoint_every: optimizer steps between `last` checkpoints (and at each epoch end).
    stop_after_steps: raise `Killed` after that many optimizer steps of this call (tests).
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list


    acc = accelerator if accelerator is not None else Accelerator()
    if acc.gradient_accumulation_steps != 1:
        raise ValueError("stage 1 accumulates gradients itself (cfg.grad_accum): give an Accelerator with "
                         f"gradient_accumulation_steps=1, not {acc.gradient_accumulation_steps}")
    world, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    items = clips(train_samples, cfg.clip_frames)
    if not items:
        raise ValueError("no training clips")
    accum = max(1, int(cfg.grad_accum)) * max(1, int(cfg.batch_size))
    steps_per_epoch = math.ceil(len(items) / accum)
    total = steps_per_epoch * int(cfg.epochs)
    ahd.to(acc.device)
    params = [p for p in ahd.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, cfg.warmup_ratio, cfg.lr, cfg.min_lr))
    dev = ahd.text.device
    state = {"epoch": 0, "step": 0, "history": [], "val_history": [], "best": None, "epoch_seconds": []}
    torch.manual_seed(cfg.seed)
    last_dir, best_dir = out / "last", out / "best"
    old_last = last_dir.with_name(last_dir.name + ".old")
    if resume and main and not last_dir.exists() and (old_last / "training_state.pt").is_file():
        old_last.rename(last_dir)  # a kill inside atomic_replace_dir left the previous `last` aside
    acc.wait_for_everyone()
    if resume and last_dir.exists() and not (last_dir / "training_state.pt").exists():
        raise ResumeStateError(f"{last_dir}: a `last` checkpoint without its training_state.pt (a save cut "
                               f"short?): cannot resume from it; delete {last_dir} to restart stage 1 from step 0")
    if resume and (last_dir / "training_state.pt").exists():  # every process loads the same `last`
        ck, ck_meta = load_ahd(last_dir)
        ts = _load_training_state(last_dir / "training_state.pt")
        if ts.get("total") != total:
            raise ResumeMismatch(f"{last_dir}: checkpoint is for {ts.get('total')} steps, this run has {total}")
        if (ck_meta.get("backbone") or {}).get("identity") != (meta.get("backbone") or {}).get("identity"):
            raise ResumeMismatch(f"{last_dir}: checkpoint is from another backbone")
        if ck.config_dict() != ahd.config_dict():
            raise ResumeMismatch(f"{last_dir}: checkpoint has another AHD configuration")
        ahd.load_state_dict(ck.state_dict())
        try:
            opt.load_state_dict(ts["optimizer"])
            sched.load_state_dict(ts["scheduler"])
            _set_rng_state(ts["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise ResumeStateError(f"{last_dir / 'training_state.pt'}: corrupt training state ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else 'bad value'}); delete {last_dir} to "
                                   "restart stage 1 from step 0") from None
        state = ts["state"]
    # DDP-wrapped under several processes; the scheduler stays a plain LambdaLR on the same optimizer,
    # stepped once per optimizer step
    model, aopt = acc.prepare(ahd, opt)
    log = log or (lambda s: None)

    def on_main(fn):
        """fn() on the main process only, all processes waiting for it (checkpoints, history)."""
        acc.wait_for_everyone()
        if main:
            fn()
        acc.wait_for_everyone()

    def save_last():
        def training_state(folder: Path) -> None:  # written into the new `last` before it is swapped in
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                        "state": _plain(state), "total": total}, folder / "training_state.pt")

        save_ahd(acc.unwrap_model(model), last_dir, {**meta, "epoch": state["epoch"], "step": state["step"]},
                 extra=training_state)

    def checkpoint():
        on_main(save_last)

    def clip_loss(batch):
        feats = {l: torch.stack([_feature_rows(smp, l, a, b) for smp, a, b in batch]).to(dev).float()
                 for l in ahd.layers}
        masks = torch.stack([smp.masks[a:b] for smp, a, b in batch]).to(dev)
        return ahd_loss(ahd, model(feats), masks, cfg.pos_weight, cfg.dice_weight, cfg.frame_ce)

    def step_loss(parts) -> float:
        """Backward of one optimizer step's group of clips; returns the group's mean loss."""
        shapes = {(b - a, *_mask_shape(smp)[1:]) for smp, a, b in parts}
        if world == 1:
            if len(shapes) == 1:
                # The accumulation group in one batched pass: equal-sized clips, so the mean loss of
                # the batch is exactly the mean of the per-clip losses that accumulation would sum.
                loss = clip_loss(parts)
                acc.backward(loss)
                return float(loss.detach())
            tot = 0.0
            for part in parts:
                loss = clip_loss([part])
                acc.backward(loss / len(parts))
                tot += float(loss.detach()) / len(parts)
            return tot
        # Several processes: this one's share of the group. Its loss is local_sum / len(group) * world,
        # so DDP's gradient average is the gradient of the group's mean loss. Every process runs the
        # same number of forward/backward passes (DDP's collectives); one without a clip of its own
        # runs the group's first clip with weight 0.
        mine = list(parts[rank::world])
        local = torch.zeros((), dtype=torch.float64, device=dev)
        if len(shapes) == 1:
            loss = clip_loss(mine or parts[:1])
            acc.backward(loss * (len(mine) * world / len(parts)))
            local += loss.detach().double() * len(mine)
        else:
            n = math.ceil(len(parts) / world)
            for i in range(n):
                own = i < len(mine)
                with acc.no_sync(model) if i < n - 1 else nullcontext():  # all-reduce on the last pass
                    loss = clip_loss([mine[i] if own else parts[0]])
                    acc.backward(loss * ((world / len(parts)) if own else 0.0))
                if own:
                    local += loss.detach().double()
        return float(acc.reduce(local, "sum")) / len(parts)

    steps_this_call = 0
    bar = tqdm(total=total, initial=state["step"], desc="stage 1", disable=not progress or not main)
    while state["epoch"] < int(cfg.epochs):
        ep = state["epoch"]
        order = np.random.default_rng([int(cfg.seed), ep]).permutation(len(items))
        first = (state["step"] - ep * steps_per_epoch) * accum  # resume inside an epoch
        t0 = time.time()
        ahd.train()
        for s0 in range(first, len(order), accum):
            aopt.zero_grad(set_to_none=True)
            group = order[s0:s0 + accum]
            tot = step_loss([(train_samples[items[j][0]], items[j][1], items[j][2]) for j in group])
            aopt.step()
            sched.step()
            state["step"] += 1
            steps_this_call += 1
            state["history"].append({"step": state["step"], "epoch": ep, "loss": tot,
                                     "lr": opt.param_groups[0]["lr"]})
            bar.update(1)
            bar.set_postfix(loss=f"{tot:.4f}")
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                checkpoint()
                bar.close()
                raise Killed(f"stopped after {steps_this_call} steps (step {state['step']})")
            if state["step"] % checkpoint_every == 0:
                checkpoint()
        state["epoch_seconds"].append(time.time() - t0)
        state["epoch"] = ep + 1
        if val_samples and (state["epoch"] % max(1, cfg.eval_every) == 0 or state["epoch"] == cfg.epochs):
            key = getattr(cfg, "select_by", "micro_auc")  # paper: best validation micro-AUC
            if key not in ("micro_auc", "macro_auc", "rbdc", "tbdc", "last"):
                raise ValueError(f"stage1.select_by must be micro_auc, macro_auc, rbdc, tbdc or last, got {key!r}")

            def validate():
                m, _ = evaluate(acc.unwrap_model(model), val_samples, eval_cfg, frame_score, topk)
                rec = {"epoch": state["epoch"], "step": state["step"], **m}
                state["val_history"].append(rec)
                log(f"[stage1] epoch {state['epoch']}: val {json.dumps({k: round(v, 4) for k, v in m.items()})}")
                best = state["best"]
                if best is None or key == "last" or (np.nan_to_num(m[key], nan=-1) > np.nan_to_num(best[key], nan=-1)):
                    state["best"] = rec
                    save_ahd(acc.unwrap_model(model), best_dir,
                             {**meta, "epoch": state["epoch"], "step": state["step"], "val": m})

            on_main(validate)
            if world > 1:  # every process returns (and checkpoints) the main process's validation records
                shared = broadcast_object_list([state["val_history"], state["best"]], from_process=0)
                state["val_history"], state["best"] = shared
        checkpoint()
    bar.close()

    def finish():
        if not val_samples:
            save_ahd(acc.unwrap_model(model), best_dir, {**meta, "epoch": state["epoch"], "step": state["step"]})
        atomic_write_json(out / "history.json", {"train": state["history"], "val": state["val_history"],
                                                 "best": state["best"], "epoch_seconds": state["epoch_seconds"]})

    on_main(finish)
    return TrainResult(state["history"], state["val_history"], state["best"], best_dir if best_dir.exists() else None,
                       last_dir, state["epoch_seconds"])


def backbone_meta(backbone, cfg) -> dict:
    """What a checkpoint records about the backbone it was trained on."""
    return {"backbone": {"path": str(cfg.backbone.path), "identity": backbone.identity,
                         "layers": sorted(backbone.resolve_layers(cfg.backbone.layers)),  # "auto" resolved
                         "text_encoder": cfg.backbone.text_encoder, "max_pixels": cfg.backbone.max_pixels,
                         "dtype": cfg.backbone.dtype},
            "frame_score": cfg.ahd.frame_score, "topk": cfg.ahd.topk}


# -- notebook 02: the whole stage in one call ------------------------------------------------------


