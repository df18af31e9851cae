"""A local transformers Qwen2.5-VL checkpoint as an annotator (`LocalAnnotator`, "local"); torch and
transformers are imported only when it loads (they are heavy, and the other annotators need neither)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from PIL import Image

from tvad.corpus.annotators.base import AnnotatorError, FrameRecord, new_record, refuse_image
from tvad.corpus.annotators.parsing import fill_record


class LocalAnnotator:
    """A transformers Qwen2.5-VL checkpoint (any local directory or hub id) asked for JSON.

    The image goes through the checkpoint's processor (Qwen's smart resize under `max_pixels`);
    boxes in the answer are read in the resized image's pixels (Qwen2.5-VL's absolute grounding)
    and scaled back to the frame. Greedy decoding. transformers/torch are imported here only.
    """

    needs_pixels = True

    def __init__(self, path: str, *, device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 512,
                 max_pixels: int = 476 * 868, model: Any = None, processor: Any = None) -> None:
        self.path = str(path)
        self.name = f"local:{os.path.basename(self.path.rstrip('/')) or self.path}"
        self.device, self.max_new_tokens, self.max_pixels = device, int(max_new_tokens), int(max_pixels)
        self._dtype = dtype
        self._model, self._processor = model, processor

    def _load(self) -> None:
        if self._model is not None and self._processor is not None:
            return
        try:  # heavy: imported only when a checkpoint is loaded
            import torch
            from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
        except ImportError as e:  # pragma: no cover - the package requires them
            raise AnnotatorError(f"local annotator needs torch and transformers ({e})") from None
        try:
            if self._processor is None:
                self._processor = AutoProcessor.from_pretrained(self.path)
            if self._model is None:
                self._model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    self.path, dtype=getattr(torch, self._dtype)).to(self.device).eval()
        except Exception as e:
            raise AnnotatorError(f"local annotator: cannot load a Qwen2.5-VL checkpoint from {self.path!r} "
                                 f"({type(e).__name__}: {e})") from None

    def _chat_text(self, prompt: str) -> str:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        tmpl = getattr(self._processor, "chat_template", None) or getattr(
            getattr(self._processor, "tokenizer", None), "chat_template", None)
        if tmpl:
            try:
                return self._processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception:
                pass
        return ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                f"{prompt}<|im_end|>\n<|im_start|>assistant\n")

    def generate(self, image: np.ndarray, prompt: str) -> tuple[str, tuple[int, int]]:
        """(answer text, (H, W) of the image the model saw)."""
        import torch  # heavy: only once a checkpoint is used

        self._load()
        proc = self._processor
        text = self._chat_text(prompt)
        ip = getattr(proc, "image_processor", None)
        size = dict(getattr(ip, "size", None) or {})
        size["longest_edge"] = self.max_pixels  # Qwen's pixel budget (min stays the processor's)
        size.setdefault("shortest_edge", min(56 * 56, self.max_pixels))
        inputs = proc(text=[text], images=[Image.fromarray(np.asarray(image, dtype=np.uint8))],
                      return_tensors="pt", images_kwargs={"size": size})
        grid = inputs["image_grid_thw"][0].tolist()
        patch = getattr(getattr(proc, "image_processor", None), "patch_size", 14) or 14
        seen = (int(grid[1]) * patch, int(grid[2]) * patch)
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with torch.no_grad():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        tok = getattr(proc, "tokenizer", proc)
        return tok.decode(new, skip_special_tokens=True), seen

    def describe_frame(self, image, prompt, *, video=None, frame=None, focus=None, prompt_hash="") -> FrameRecord:
        t0 = time.perf_counter()
        rec = new_record(self.name, video, frame, focus, prompt_hash)
        if refuse_image(rec, image):
            return rec
        self._load()  # configuration errors (a wrong path) raise: they are not per-frame failures
        rec.attempts = 1
        try:
            text, (sh, sw) = self.generate(image, prompt)
        except Exception as e:  # a generation failure on one frame is recorded, not raised
            rec.status, rec.error = "request_failed", f"generation failed: {type(e).__name__}: {e}"
            rec.elapsed_s = time.perf_counter() - t0
            return rec
        rec.raw = text[:2000]
        h, w = np.asarray(image).shape[:2]
        fill_record(rec, text, (h, w), scale=(w / max(sw, 1), h / max(sh, 1)))
        rec.elapsed_s = time.perf_counter() - t0
        return rec
