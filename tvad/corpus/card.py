"""The corpus card (`CorpusCard`): what a build made (counts, question types, Yes/No balance, answer
lengths, extraction statistics), as JSON and Markdown."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from tvad.corpus.dialogues import clip_reference
from tvad.corpus.schema import SCHEMA_VERSION


def _length_stats(texts: Sequence[str]) -> dict:
    if not texts:
        return {"n": 0}
    lens = sorted(len(t.split()) for t in texts)
    return {"n": len(lens), "mean_words": round(statistics.fmean(lens), 1), "median_words": statistics.median(lens),
            "p95_words": lens[min(len(lens) - 1, int(0.95 * len(lens)))], "max_words": lens[-1],
            "min_words": lens[0]}


@dataclass
class CorpusCard:
    """What was built: counts, question types, Yes/No balance, answer lengths, extraction stats."""

    out_dir: str
    annotator: str
    files: dict  # file name -> {"dialogues": n, "turns": n}
    clips: dict  # split -> number of clips
    source_videos: dict  # split -> number of distinct source videos
    excluded_splits: dict  # split name -> clips not used (test splits)
    turn_types: dict  # phase -> {type: count}
    turn_kinds: dict  # phase -> {kind: count}
    yes_no: dict  # phase -> {"yes": n, "no": n}
    lengths: dict  # phase -> type -> word-length stats of the answers
    targets: dict  # {"general": n, "anomaly": n, "clips_without_targets": n}
    extraction: dict  # view -> ExtractStats dict
    seconds: float
    schema: str = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        L = [f"# Corpus card ({self.schema})", "",
             f"Annotator: `{self.annotator}`. Built in {self.seconds:.1f} s. Folder: `{self.out_dir}`.", "",
             "| file | dialogues | turns |", "|---|---:|---:|"]
        L += [f"| {f} | {v['dialogues']} | {v['turns']} |" for f, v in self.files.items()]
        L += ["", "| split | clips | source videos |", "|---|---:|---:|"]
        L += [f"| {s} | {n} | {self.source_videos.get(s, 0)} |" for s, n in self.clips.items()]
        if self.excluded_splits:
            L += ["", "Not used (evaluation splits): " + ", ".join(f"{k} ({v} clips)" for k, v in self.excluded_splits.items())]
        for ph in sorted(self.turn_types):
            L += ["", f"## Phase {ph.upper()}", "", "| question type | turns | mean words | median | p95 | max |",
                  "|---|---:|---:|---:|---:|---:|"]
            for typ, n in sorted(self.turn_types[ph].items()):
                s = self.lengths.get(ph, {}).get(typ, {})
                L.append(f"| {typ} | {n} | {s.get('mean_words', '')} | {s.get('median_words', '')} | "
                         f"{s.get('p95_words', '')} | {s.get('max_words', '')} |")
            yn = self.yes_no.get(ph, {})
            L += ["", f"Yes/No answers: {yn.get('yes', 0)} yes, {yn.get('no', 0)} no. Kinds: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(self.turn_kinds.get(ph, {}).items()))]
        L += ["", "## Extraction", "", "| view | asked | cached | ok | invalid answer | request failed | "
              "no anomaly (skipped) | instances |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for view, s in self.extraction.items():
            L.append(f"| {view} | {s['asked']} | {s['cached']} | {s['ok']} | {s['invalid_answer']} | "
                     f"{s['request_failed']} | {s['skipped_no_anomaly']} | {s['instances']} |")
            for r, n in s.get("failure_reasons", {}).items():
                L.append(f"|  failure: {r} | {n} | | | | | | |")
        L += ["", f"Targets: {self.targets}", ""]
        return "\n".join(L)


def make_card(out: Path, ann: str, files: dict, by_split: dict, excluded: dict, rows: dict, stats: dict,
              n_general: int, n_anom: int, n_empty: int, seconds: float) -> CorpusCard:
    """The card of a build from its written rows ({(phase, split): [record]}) and extraction stats."""
    types: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    kinds: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    yn: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    answers: dict[str, dict[str, list[str]]] = {"a": {}, "b": {}}
    for (ph, _), rs in rows.items():
        for r in rs:
            for tr in r["turns"]:
                types[ph][tr["type"]] += 1
                kinds[ph][tr["kind"]] += 1
                if tr["type"] == "yes_no":
                    yn[ph][tr["truth"]] += 1
                answers[ph].setdefault(tr["type"], []).append(tr["references"][0])
    return CorpusCard(
        out_dir=str(out), annotator=ann, files=files,
        clips={s: len(v) for s, v in by_split.items()},
        source_videos={s: len({clip_reference(x)["source_video"] for x in v}) for s, v in by_split.items()},
        excluded_splits=excluded, turn_types={k: dict(v) for k, v in types.items()},
        turn_kinds={k: dict(v) for k, v in kinds.items()}, yes_no={k: dict(v) for k, v in yn.items()},
        lengths={ph: {t: _length_stats(a) for t, a in d.items()} for ph, d in answers.items()},
        targets={"general": n_general, "anomaly": n_anom, "clips_without_targets": n_empty},
        extraction={k: v.to_dict() for k, v in stats.items()}, seconds=round(seconds, 2))
