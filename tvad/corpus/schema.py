"""The corpus line format (`SCHEMA`, version `SCHEMA_VERSION`): its check (`validate_record`) and
a validating reader (`load_corpus`) whose errors name the file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tvad.io import json_lines

SCHEMA_VERSION = "tvad.corpus/v1"

TURN_TYPES = ("scene", "target", "trajectory", "temporal", "yes_no")
# Documented schema of one corpus line (JSON object). `validate_record` enforces it.
SCHEMA: dict[str, str] = {
    "schema": f'"{SCHEMA_VERSION}"',
    "id": "str, unique in the file: '<phase>/<split>/<clip name>'",
    "phase": '"a" (all objects: scene, attributes, motion) or "b" (anomaly-focused)',
    "split": '"train" or "val"',
    "clip": "object: name (str), source_video (str), frame_indices (list[int], source-video frames of the "
            "clip's frames, in order), num_frames (int), fps (float), size ([H, W]), label (0/1), path (str)",
    "messages": "list of {role, content} (str content): one 'system', then alternating 'user' / 'assistant', "
                "ending with 'assistant'. The clip's frames belong to the first user turn (the collator attaches them).",
    "turns": "list, one per user/assistant pair: {type: scene|target|trajectory|temporal|yes_no, kind: str, "
             "references: list[str] (>= 1; [0] is the assistant text), truth: 'yes'|'no' (yes_no only)}",
    "targets": "list of per-target summaries: target, category, attributes, entry, exit (0-based), regions "
               "(ordered region words), direction, speed_class, anomalous",
    "annotator": "str, the annotator that produced the frame records",
}


class CorpusSchemaError(ValueError):
    """A corpus line that breaks the schema; the message names the file and line."""


def validate_record(rec: Any) -> list[str]:
    """Schema problems of one corpus record ([] when valid)."""
    errs: list[str] = []
    if not isinstance(rec, dict):
        return [f"a line must be a JSON object, got {type(rec).__name__}"]
    for k in ("schema", "id", "phase", "split", "clip", "messages", "turns", "targets", "annotator"):
        if k not in rec:
            errs.append(f"missing key {k!r}")
    if errs:
        return errs
    if rec["schema"] != SCHEMA_VERSION:
        errs.append(f"schema {rec['schema']!r} is not {SCHEMA_VERSION!r}")
    if rec["phase"] not in ("a", "b"):
        errs.append(f"phase must be 'a' or 'b', got {rec['phase']!r}")
    if rec["split"] not in ("train", "val"):
        errs.append(f"split must be 'train' or 'val', got {rec['split']!r}")
    c = rec["clip"]
    if not isinstance(c, dict):
        errs.append("clip must be an object")
    else:
        for k, typ in (("name", str), ("source_video", str), ("frame_indices", list), ("num_frames", int)):
            if not isinstance(c.get(k), typ):
                errs.append(f"clip.{k} must be {typ.__name__}")
        if isinstance(c.get("frame_indices"), list) and isinstance(c.get("num_frames"), int):
            if len(c["frame_indices"]) != c["num_frames"] or not all(isinstance(i, int) for i in c["frame_indices"]):
                errs.append("clip.frame_indices must hold num_frames integers")
    m = rec["messages"]
    if not isinstance(m, list) or len(m) < 3:
        errs.append("messages must be a list of at least 3 messages (system, user, assistant)")
        return errs
    for i, msg in enumerate(m):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"} or not isinstance(msg.get("content"), str):
            errs.append(f"messages[{i}] must be {{role, content}} with string content")
            return errs
        want = "system" if i == 0 else ("user" if i % 2 == 1 else "assistant")
        if msg["role"] != want:
            errs.append(f"messages[{i}].role is {msg['role']!r}, expected {want!r}")
        if not msg["content"].strip():
            errs.append(f"messages[{i}].content is empty")
    if m[-1]["role"] != "assistant":
        errs.append("the last message must be the assistant's")
    t = rec["turns"]
    if not isinstance(t, list) or len(t) != (len(m) - 1) // 2:
        errs.append(f"turns must have one entry per user/assistant pair ({(len(m) - 1) // 2})")
        return errs
    for i, turn in enumerate(t):
        if not isinstance(turn, dict) or turn.get("type") not in TURN_TYPES:
            errs.append(f"turns[{i}].type must be one of {TURN_TYPES}")
            continue
        refs = turn.get("references")
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
            errs.append(f"turns[{i}].references must be a non-empty list of strings")
        elif refs[0] != m[2 + 2 * i]["content"]:
            errs.append(f"turns[{i}].references[0] differs from the assistant message")
        if turn["type"] == "yes_no" and turn.get("truth") not in ("yes", "no"):
            errs.append(f"turns[{i}].truth must be 'yes' or 'no'")
    if not isinstance(rec["targets"], list):
        errs.append("targets must be a list")
    return errs


def load_corpus(path: str | os.PathLike) -> list[dict]:
    """Read a corpus JSONL, validating every line; `CorpusSchemaError` names file and line."""
    p = Path(path)
    if not p.exists():
        raise CorpusSchemaError(f"{p}: no such corpus file")
    out, seen = [], set()
    not_json = lambda n, e: CorpusSchemaError(f"{p}:{n}: not JSON ({e.msg} at column {e.colno})")  # noqa: E731
    for n, rec in json_lines(p.read_text(encoding="utf-8"), not_json):
        errs = validate_record(rec)
        if errs:
            raise CorpusSchemaError(f"{p}:{n}: " + "; ".join(errs))
        if rec["id"] in seen:
            raise CorpusSchemaError(f"{p}:{n}: duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        out.append(rec)
    return out
