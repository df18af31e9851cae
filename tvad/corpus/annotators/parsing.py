"""Strict parsing of a model's answer (`parse_answer`): JSON checked against the instance schema,
with one repair pass (code fences, prose around the JSON, trailing commas, Qwen's grounding keys)."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from tvad.corpus.annotators.base import AnswerError, FrameRecord, Instance


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _extract_json(text: str) -> tuple[Any, list[str]]:
    """json.loads, else one repair pass (fences, surrounding prose, trailing commas)."""
    if text is None or not str(text).strip():
        raise AnswerError("empty answer")
    text = str(text).strip()
    try:
        return json.loads(text), []
    except json.JSONDecodeError:
        pass
    repairs: list[str] = []
    body = text
    m = _FENCE.search(body)
    if m:
        body, repairs = m.group(1).strip(), ["removed code fence"]
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise AnswerError(f"not JSON: no object or array in the answer ({_excerpt(text)})")
    s = min(starts)
    close = "}" if body[s] == "{" else "]"
    e = body.rfind(close)
    if e <= s:
        raise AnswerError(f"partial JSON: the {body[s]!r} opened at character {s} is never closed ({_excerpt(text)})")
    if s > 0 or e < len(body) - 1:
        repairs.append("removed text around the JSON")
    body = body[s:e + 1]
    fixed = _TRAILING_COMMA.sub(r"\1", body)
    if fixed != body:
        repairs.append("removed trailing commas")
    try:
        return json.loads(fixed), repairs
    except json.JSONDecodeError as err:
        kind = "partial JSON" if "Expecting" in err.msg and err.pos >= len(fixed) - 2 else "invalid JSON"
        raise AnswerError(f"{kind}: {err.msg} at character {err.pos} ({_excerpt(text)})") from None


def _excerpt(text: str, n: int = 80) -> str:
    t = " ".join(str(text).split())
    return repr(t if len(t) <= n else t[:n] + "...")


def _as_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v if x is not None) or None
    if isinstance(v, dict):
        return None
    s = str(v).strip()
    return s or None


def parse_answer(text: str, frame_size: Sequence[int], scale: tuple[float, float] = (1.0, 1.0)
                 ) -> tuple[list[Instance], list[str]]:
    """Parse a model's JSON answer into instances; raise `AnswerError` with a reason if unusable.

    Accepts {"instances": [...]} (or a bare list with a warning). Each instance needs a non-empty
    "category" (alias "label") and a 4-number "box" (alias "bbox_2d", "bbox"); "attributes" is an
    optional mapping of short strings. Boxes are scaled by `scale` (sx, sy) (from the model's
    image size back to the frame), reordered if corners are swapped, clipped to the frame, and
    dropped (with a warning) when nothing is left inside. Instances that break the schema are
    dropped with a warning; an answer whose every instance is broken is an error.
    """
    data, warnings = _extract_json(text)
    if isinstance(data, list):
        warnings.append("bare list instead of {'instances': [...]}")
        items = data
    elif isinstance(data, dict):
        if "instances" not in data:
            if {"category", "box"} <= set(data) or {"label", "bbox_2d"} <= set(data):
                warnings.append("single instance instead of {'instances': [...]}")
                items = [data]
            else:
                raise AnswerError(f"schema: no 'instances' key (keys: {sorted(data)[:6]})")
        else:
            items = data["instances"]
    else:
        raise AnswerError(f"schema: expected an object or a list, got {type(data).__name__}")
    if not isinstance(items, list):
        raise AnswerError(f"schema: 'instances' must be a list, got {type(items).__name__}")
    h, w = float(frame_size[0]), float(frame_size[1])
    out: list[Instance] = []
    for n, it in enumerate(items):
        if not isinstance(it, dict):
            warnings.append(f"instance {n}: not an object, dropped")
            continue
        cat = _as_str(it.get("category", it.get("label")))
        if "category" not in it and "label" in it:
            warnings.append(f"instance {n}: 'label' read as 'category'")
        if not cat:
            warnings.append(f"instance {n}: no category, dropped")
            continue
        box = it.get("box", it.get("bbox_2d", it.get("bbox")))
        if "box" not in it and box is not None:
            warnings.append(f"instance {n}: 'bbox_2d'/'bbox' read as 'box'")
        try:
            if isinstance(box, str):
                raise TypeError
            x1, y1, x2, y2 = (float(v) for v in box)
            if not all(np.isfinite([x1, y1, x2, y2])):
                raise ValueError
        except (TypeError, ValueError):
            warnings.append(f"instance {n}: box is not 4 numbers ({_excerpt(json.dumps(box), 40)}), dropped")
            continue
        x1, x2 = x1 * scale[0], x2 * scale[0]
        y1, y2 = y1 * scale[1], y2 * scale[1]
        if x1 > x2 or y1 > y2:
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            warnings.append(f"instance {n}: box corners swapped")
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            warnings.append(f"instance {n}: box {[x1, y1, x2, y2]} lies outside the {int(w)}x{int(h)} frame, dropped")
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            warnings.append(f"instance {n}: box clipped to the frame")
        attrs_in = it.get("attributes") or {}
        attrs: dict[str, str] = {}
        if isinstance(attrs_in, dict):
            for k, v in attrs_in.items():
                sv = _as_str(v)
                if sv:
                    attrs[str(k)] = sv
        elif isinstance(attrs_in, (list, str)):
            sv = _as_str(attrs_in)
            if sv:
                attrs["appearance"] = sv
            warnings.append(f"instance {n}: attributes not a mapping, kept as 'appearance'")
        out.append(Instance(cat.lower(), attrs, (cx1, cy1, cx2, cy2)))
    if items and not out:
        raise AnswerError("schema: no usable instance (" + "; ".join(warnings[-3:]) + ")")
    return out, warnings


def fill_record(rec: FrameRecord, text: str, frame_size: Sequence[int], scale=(1.0, 1.0)) -> None:
    """Fill `rec` from a model's answer: its instances ("ok") or the reason it is unusable ("invalid_answer")."""
    try:
        rec.instances, rec.warnings = parse_answer(text, frame_size, scale)
        rec.status = "ok"
    except AnswerError as e:
        rec.status, rec.error = "invalid_answer", str(e)
