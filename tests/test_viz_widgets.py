"""The notebook chat box (tvad.viz.widgets): without a live frontend it prints the dialogue as text."""

from tvad.viz.widgets import chat_box


def test_chat_box_degrades_to_printed_text():
    lines, asked = [], []
    box = chat_box(lambda q: asked.append(q) or f"answer to {q}", questions=["Is there any anomaly?"],
                   interactive=False, print_fn=lines.append)
    assert box is None and asked == ["Is there any anomaly?"]
    assert lines[0] == "USER:  Is there any anomaly?\nT-VAD: answer to Is there any anomaly?"
    box = chat_box(lambda q: 1 / 0, questions=["x"], interactive=False, print_fn=lines.append)
    assert "[error" in lines[-2]  # a failing question prints, never raises
