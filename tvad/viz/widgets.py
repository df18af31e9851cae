"""A chat box for notebooks: ipywidgets in a live Jupyter frontend, printed text everywhere else.

    from tvad.viz.widgets import chat_box
    session = model.session("clip.mp4")            # tvad.model.chat.ChatSession
    chat_box(session.ask, questions=["Is there any anomaly?"], reset=session.reset)

The box only draws: it calls the `ask(question) -> answer` it is given (no model code here).
Scripted `questions` are asked first and printed as a transcript, so an executed notebook
(papermill, CI) shows a dialogue as plain text; the interactive box is added when a live
frontend can show it (Jupyter server / VS Code), or when TVAD_WIDGETS=1. TVAD_WIDGETS=0 turns
the widget off.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence


def live_frontend() -> bool:
    """True when running under a Jupyter server or VS Code kernel (not papermill / nbclient)."""
    flag = os.environ.get("TVAD_WIDGETS")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes", "on")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID")
                or os.environ.get("VSCODE_CWD"))


def format_turn(question: str, answer: str) -> str:
    return f"USER:  {question}\nT-VAD: {answer}"


def chat_box(ask: Callable[[str], str], questions: Sequence[str] = (), title: str = "Ask T-VAD about this clip",
             reset: Callable[[], None] | None = None, interactive: bool | None = None, print_fn=print):
    """Ask the scripted `questions` (printed), then show an interactive box if a frontend can.

    Returns the ipywidgets box, or None when it degrades to text."""
    for q in questions:
        try:
            a = ask(q)
        except Exception as e:  # a bad question must not kill the notebook
            a = f"[error: {e}]"
        print_fn(format_turn(q, a))
    interactive = live_frontend() if interactive is None else interactive
    if not interactive:
        print_fn("(an interactive chat box appears here when the notebook runs in Jupyter)")
        return None
    try:
        import ipywidgets as W
        from IPython.display import display
    except ImportError:
        print_fn("(ipywidgets is not installed: no interactive chat box)")
        return None
    text = W.Text(placeholder="Ask a question about the video and press Ask", layout=W.Layout(width="70%"))
    send = W.Button(description="Ask", button_style="primary")
    clear = W.Button(description="New dialogue")
    out = W.Output(layout=W.Layout(border="1px solid #ccc", padding="4px", max_height="300px", overflow="auto"))

    def on_ask(_=None):
        q = text.value.strip()
        if not q:
            return
        text.value = ""
        with out:
            try:
                a = ask(q)
            except Exception as e:
                a = f"[error: {e}]"
            print(format_turn(q, a))

    def on_clear(_=None):
        if reset is not None:
            reset()
        out.clear_output()

    send.on_click(on_ask)
    clear.on_click(on_clear)
    box = W.VBox([W.HTML(f"<b>{title}</b>"), W.HBox([text, send, clear]), out])
    display(box)
    return box
