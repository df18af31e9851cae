"""Teaching examples and whole answers: the success / failure selection rules (tvad.evaluate.selection),
the answer caps and cut flags of the dialogue evaluation, and the figures that show them in full."""

import json
import re

import numpy as np
import pytest

from tvad import evaluate as ev
from tvad.evaluate import selection as sel
from tvad.evaluate.dialogues import answer_caps, evaluate_dialogues

# -- heatmaps --------------------------------------------------------------------------------------


def _example(name, hit: float, T=6, H=24, W=32, masks=True, seed=0):
    """A clip with a GT box in frames 2-4; its AHD heatmap `hit` hotter on the box than elsewhere."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((T, H, W, 3)) * 255).astype(np.uint8)
    m = np.zeros((T, H, W), np.uint8)
    rows = []
    for t in range(2, 5):
        m[t, 5:12, 8:16] = 1
        rows.append([1, t, 8, 5, 16, 12])
    heat = np.full((T, H, W), 0.3, np.float32)
    heat[m > 0] += hit
    return {"name": name, "frames": frames, "masks": m if masks else None, "gt_tracks": np.array(rows, float),
            "heatmaps": {"ahd": np.clip(heat, 0, 1)}}


def test_heat_separation_and_regions():
    ex = _example("a", 0.5)
    region = sel.example_region(ex)
    assert region.sum() == 3 * 7 * 8
    assert sel.heat_separation(ex["heatmaps"]["ahd"], region) == pytest.approx(0.5)
    boxes = sel.boxes_region(ex["gt_tracks"], ex["frames"].shape[:3])
    assert (boxes == (ex["masks"] > 0)).all()  # boxes rasterised as the masks here
    assert (sel.example_region({**ex, "masks": None}) == boxes).all()
    assert sel.heat_separation(ex["heatmaps"]["ahd"], np.zeros_like(region)) is None  # no region
    with pytest.raises(ValueError, match="shape"):
        sel.heat_separation(ex["heatmaps"]["ahd"], region[:2])


def test_pick_heatmap_examples_success_and_failure():
    exs = [_example("mid", 0.2), _example("best", 0.6), _example("miss", -0.2, masks=False), _example("best2", 0.6)]
    picked = sel.pick_heatmap_examples(exs)
    assert [e["name"] for e, _ in picked] == ["best", "miss"]  # highest (ties: first name), lowest
    assert picked[0][1].startswith("Success: the heatmap hits") and "+0.60" in picked[0][1]
    assert picked[1][1].startswith("Failure: the heatmap misses") and "-0.20" in picked[1][1]
    # every clip separates: the lowest is shown as the weakest hit, and the title says so
    picked = sel.pick_heatmap_examples(exs[:2])
    assert picked[1][1].startswith("No failure among 2 examples: the weakest hit (mid")
    assert sel.pick_heatmap_examples([exs[0]]) == [(exs[0], picked[1][1].replace(
        "No failure among 2 examples: the weakest hit", "Success: the heatmap hits the anomalous target").replace(
        "inside - outside", "heat inside the GT region - outside"))]
    assert sel.pick_heatmap_examples([{**exs[0], "heatmaps": {}}]) == []


# -- dialogues --------------------------------------------------------------------------------------


def _dialogue(i, judgement_answer, truth, target_answer="A black car.", target_refs=("Target 1 is a black car.",)):
    out = [{"id": i, "turn": 0, "type": "yes_no", "kind": "judgement", "answer": judgement_answer, "truth": truth,
            "references": ["Yes."]}]
    if truth == "yes":
        out.append({"id": i, "turn": 1, "type": "target", "kind": "appearance", "answer": target_answer,
                    "references": list(target_refs)})
    return out


def test_pick_dialogue_examples_rules():
    preds = (_dialogue("n1", "No.", "no") + _dialogue("a1", "Yes.", "yes", "A person.")
             + _dialogue("a2", "Yes.", "yes") + _dialogue("a3", "No.", "yes") + _dialogue("n2", "Yes.", "no"))
    picks = sel.pick_dialogue_examples(preds)
    assert [(p["id"], p["role"]) for p in picks] == [("a2", "success"), ("a3", "failure")]
    assert picks[0]["rule"] == "first with a right judgement and a right target category"
    assert picks[0]["reason"] == "judgement right (Yes); target category right: named car (reference: car)"
    assert picks[1]["reason"].startswith("judgement wrong (answered No, truth Yes)")
    # no wrong judgement: the first wrong category; none of either: the worst available, said so
    picks = sel.pick_dialogue_examples(_dialogue("a1", "Yes.", "yes", "A person.") + _dialogue("a2", "Yes.", "yes"))
    assert [p["id"] for p in picks] == ["a2", "a1"] and "wrong target category" in picks[1]["rule"]
    picks = sel.pick_dialogue_examples(_dialogue("a2", "Yes.", "yes") + _dialogue("n1", "No.", "no"))
    assert [p["id"] for p in picks] == ["a2", "n1"] and picks[1]["rule"].startswith("no wrong judgement or target")
    # no right category anywhere: the first right judgement, said so; one dialogue: the success alone
    picks = sel.pick_dialogue_examples(_dialogue("n1", "No.", "no") + _dialogue("a1", "No.", "yes"))
    assert picks[0]["id"] == "n1" and "none also names" in picks[0]["rule"] and picks[1]["id"] == "a1"
    assert [p["role"] for p in sel.pick_dialogue_examples(_dialogue("a2", "Yes.", "yes"))] == ["success"]
    assert sel.pick_dialogue_examples([]) == []


# -- whole answers ----------------------------------------------------------------------------------


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


class _Model:
    """Answers with the first reference's words, cut at the cap (hit: the cap ended it)."""

    tokenizer = _Tok()

    def __init__(self, answers):
        self.answers, self.caps = answers, []

    def answer_capped(self, msgs, clip, cap):
        self.caps.append(cap)
        words = self.answers[msgs[-1]["content"]].split()
        return " ".join(words[:cap]), len(words) > cap


class _Clips:
    def get(self, clip):
        return None


def _records():
    long = "Target 1 moves from the left area to the right area quickly, then stops near the bench."  # 17 words
    turns = [("Anomaly?", "yes_no", ["Yes. There is one anomalous target: a car.", "Yes."], "yes"),
             ("Looks?", "target", ["The target is a black car."], None),
             ("Moves?", "trajectory", [long], None)]
    msgs = [{"role": "system", "content": "s"}]
    for q, _, refs, _ in turns:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": refs[0]}]
    return [{"id": "r0", "clip": {"name": "c", "label": 1, "source": "synthetic"}, "messages": msgs,
             "turns": [{"type": t, "kind": None, "references": refs, **({"truth": tr} if tr else {})}
                       for _, t, refs, tr in turns]}]


def test_answer_caps_are_a_safety_limit_above_the_longest_reference():
    recs = _records()
    assert answer_caps(_Tok(), recs) == {"yes_no": 2 * 8 + 16, "target": 2 * 6 + 16, "trajectory": 2 * 17 + 16}
    # an upper bound lowers the slack, never below the longest reference
    assert answer_caps(_Tok(), recs, upper=20) == {"yes_no": 20, "target": 20, "trajectory": 20}
    assert answer_caps(_Tok(), recs, types=("trajectory",), upper=4) == {"trajectory": 17}


def test_evaluate_dialogues_answers_in_full_and_flags_cut_answers():
    recs = _records()
    model = _Model({"Anomaly?": "Yes. There is one anomalous target: a car and it keeps driving on.",
                    "Looks?": "The target is a black car " + "very " * 40 + "big.",  # runs past its cap
                    "Moves?": "Target 1 moves to the right"})  # stops mid-sentence
    m, preds = evaluate_dialogues(model, recs, _Clips(), max_new_tokens=128)
    assert model.caps == [32, 28, 50]
    assert preds[0]["answer"] == "Yes. There is one anomalous target: a car and it keeps driving on."  # not cut at 8
    assert [p["cut"] for p in preds] == [False, True, True]
    assert [p["max_new_tokens"] for p in preds] == [32, 28, 50]
    assert m["answers_cut"] == 2 and m["answers_n"] == 3 and m["yes_no_accuracy"] == 1.0
    assert m["target_category_accuracy"] == 1.0 and m["target_category_accuracy_n"] == 1


# -- figures ----------------------------------------------------------------------------------------


def _texts(fig):
    out = []
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title()]
    out += [t.get_text() for t in fig.texts]
    return out


def _norm(s):
    return re.sub(r"\s+", " ", s).strip()


LONG = ("Target 1 is a person in a white top and grey shorts with a green backpack, walking against the flow "
        "of the crowd. Target 2 is a black car that drives on the pedestrian walkway at high speed near the bench.")


def test_dialogue_figure_shows_every_answer_in_full():
    import matplotlib.pyplot as plt

    from tvad.viz import figures

    frames, heat = _example("x", 0.5)["frames"], _example("x", 0.5)["heatmaps"]["ahd"]
    exs = [{"frames": frames, "heat": heat, "title": "Success: judgement right (Yes)",
            "turns": [{"question": "What does the anomalous target look like?", "answer": LONG, "reference": LONG[:60]}]},
           {"frames": frames, "heat": None, "title": "Failure: " + "judgement wrong " * 12,
            "turns": [{"question": "Is there any anomaly?", "answer": "No.", "reference": "Yes. " + LONG}]}]
    fig = figures.dialogue_examples(exs, wrap=40)
    texts = _texts(fig)
    assert not any("..." in t or "\u2026" in t for t in texts)
    lines = [t for t in texts if t]
    talk = [t for t in lines if t.startswith(("Q: ", "Model: ", "Ref.: ", "      "))]
    assert len(talk) > 8 and all(len(t) <= 40 + len("Model: ") for t in talk)  # wrapped
    body = _norm(" ".join(t.split(": ", 1)[1] if t.startswith(("Model: ", "Ref.: ", "Q: ")) else t for t in lines))
    for s in (LONG, "Yes. " + LONG, LONG[:60], "What does the anomalous target look like?", "No.",
              "Success: judgement right (Yes)", _norm("Failure: " + "judgement wrong " * 12)):
        assert _norm(s) in body, s
    assert sum(t.startswith("Model: ") for t in lines) == 2 and sum(t.startswith("Ref.: ") for t in lines) == 2
    plt.close(fig)


def test_heatmap_grid_titles():
    import matplotlib.pyplot as plt

    from tvad.viz import figures

    exs = [_example("a", 0.5), _example("b", -0.1)]
    titles = ["Success: the heatmap hits the anomalous target", "Failure: the heatmap misses the anomalous target"]
    fig = figures.heatmap_grid(exs, times=3, titles=titles, rows=("frame", "gt", "ahd"))
    texts = _texts(fig)
    assert all(t in texts for t in titles)
    assert len(fig.axes) == 2 * 3 * 3 + 2  # the image cells and one heading per example
    plt.close(fig)


def test_dialogue_example_store_and_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from tvad.evaluate.figures import dialogue_title, make_figures
    from tvad.evaluate.store import _pred_dir, _save_npz, load_dialogue_example

    p = _pred_dir(tmp_path)
    p.mkdir(parents=True)
    turns = [{"question": "Anomaly?", "answer": "No.", "reference": "Yes."}]
    f = _example("a", 0.5)
    _save_npz(p / "dialogue_example.npz", {"frames": f["frames"], "heat": f["heatmaps"]["ahd"].astype(np.float16),
                                           "frames_1": f["frames"][:3],
                                           "heat_1": f["heatmaps"]["ahd"][:3].astype(np.float16)}, {"id": "r0"})
    exs = [{"id": "r0", "role": "success", "rule": "first with a right judgement", "reason": "judgement right (Yes)",
            "turns": turns}, {"id": "r1", "role": "failure", "rule": "first with a wrong judgement",
                              "reason": "judgement wrong (answered No, truth Yes)", "turns": turns}]
    (p / "dialogue_example.json").write_text(json.dumps({"id": "r0", "turns": turns, "examples": exs}))
    dex = load_dialogue_example(tmp_path)
    assert [e["role"] for e in dex["examples"]] == ["success", "failure"] and len(dex["examples"][1]["frames"]) == 3
    assert dialogue_title(dex["examples"][1]).startswith("Failure: judgement wrong (answered No, truth Yes) [r1;")
    made = make_figures(tmp_path, log=None)
    assert set(made) == {"dialogue"}
    # an older file: one dialogue, titled by its id
    (p / "dialogue_example.json").write_text(json.dumps({"id": "r0", "turns": turns}))
    old = load_dialogue_example(tmp_path)
    assert [e["role"] for e in old["examples"]] == ["example"] and dialogue_title(old["examples"][0]) == "r0"
    (p / "dialogue_example.json").write_text(json.dumps({"id": "r0", "turns": turns, "examples": []}))
    with pytest.raises(ev.EvalError, match="dialogue_example.json"):
        load_dialogue_example(tmp_path)


def test_example_clips_keep_the_best_and_worst_heatmap():
    from types import SimpleNamespace

    from tvad.evaluate.predict import example_clips

    exs = {"n0": None, "mid": _example("mid", 0.2), "best": _example("best", 0.6), "miss": _example("miss", -0.2),
           "late": _example("late", 0.3)}
    samples = [SimpleNamespace(name=k, frame_labels=np.zeros(6) if e is None else np.arange(6) % 2,
                               gt_tracks=np.zeros((0, 6)) if e is None else e["gt_tracks"]) for k, e in exs.items()]
    heat = {k: e["heatmaps"]["ahd"] for k, e in exs.items() if e is not None}
    assert example_clips(samples, heat, 3) == [2, 3, 1]  # best, worst, then the first anomalous
    assert example_clips(samples, heat, 1) == [2, 3]  # at least those two
    assert example_clips(samples, None, 2) == [1, 2]  # no AHD heatmaps: the first anomalous clips
