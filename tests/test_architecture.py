"""The house rules of ARCHITECTURE.md, checked on the source: imports go one way (no circle, no
import from a lower layer to a higher one), intra-package imports sit at the top of modules, and
`import tvad` stays light (no torch, no transformers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "tvad"

# What each part of the package may import from tvad (besides itself). Bottom to top:
# config / io / prompts / run / data / metrics / baselines -> model / viz -> corpus / train -> evaluate
# -> steps -> cli / pipeline / study.
BOTTOM = {"tvad.config", "tvad.io", "tvad.prompts", "tvad.dist"}
ALLOWED = {
    "tvad.config": set(),
    "tvad.io": set(),
    "tvad.prompts": set(),
    "tvad.dist": set(),
    "tvad.run": {"tvad.config", "tvad.io", "tvad.dist"},
    "tvad.metrics": {"tvad.io"},
    "tvad.data": BOTTOM,
    "tvad.baselines": set(),
    "tvad.model": BOTTOM | {"tvad.data", "tvad.metrics"},
    "tvad.viz": BOTTOM | {"tvad.metrics"},
    "tvad.corpus": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics"},
    "tvad.train": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics", "tvad.baselines", "tvad.model", "tvad.corpus"},
    "tvad.evaluate": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics", "tvad.baselines", "tvad.model", "tvad.viz",
                               "tvad.corpus", "tvad.train"},
    "tvad.steps": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics", "tvad.baselines", "tvad.model", "tvad.viz",
                            "tvad.corpus", "tvad.train", "tvad.evaluate"},
    "tvad.plan": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics", "tvad.model", "tvad.corpus", "tvad.train"},
    "tvad.pipeline": {"tvad.config", "tvad.io", "tvad.run", "tvad.dist"},
    "tvad.study": {"tvad.config", "tvad.io", "tvad.pipeline"},
    "tvad.cli": BOTTOM | {"tvad.run", "tvad.data", "tvad.metrics", "tvad.model", "tvad.viz", "tvad.evaluate",
                          "tvad.pipeline", "tvad.plan", "tvad.study"},
}
LAZY_OK = {"tvad"}  # tvad/__init__.py: `load` and `TVAD` are imported on first use, so `import tvad` stays light


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """tvad.model.ahd -> tvad.model; tvad.io -> tvad.io; tvad -> tvad."""
    return ".".join(module.split(".")[:2])


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importing module, imported tvad module, line, at module level) for every tvad import."""
    out = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module(path)
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):  # imports under `if TYPE_CHECKING:` count too: a circle is a circle
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tvad":
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                         if (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).exists()
                                         or (PKG.parent / (f"{node.module}.{a.name}".replace(".", "/") + ".py")).exists()]
                out += [(mod, n, node.lineno, id(node) in top) for n in names]
            elif isinstance(node, ast.Import):
                out += [(mod, a.name, node.lineno, id(node) in top) for a in node.names if a.name.split(".")[0] == "tvad"]
    return out


def test_every_part_imports_only_from_below():
    bad = []
    for mod, target, line, _ in _imports():
        src, dst = _part(mod), _part(target)
        if src == dst or src == "tvad" or dst == "tvad" and target == "tvad":
            continue
        if src not in ALLOWED:
            bad.append(f"{mod}: not placed in a layer (add it to ALLOWED and ARCHITECTURE.md)")
        elif dst not in ALLOWED[src]:
            bad.append(f"{mod}:{line} imports {target} ({src} may import {sorted(ALLOWED[src]) or 'nothing'})")
    assert not bad, "\n".join(bad)


def test_no_import_circle_between_modules():
    graph: dict[str, set[str]] = {}
    for mod, target, _, top in _imports():
        if top and mod != target:
            graph.setdefault(mod, set()).add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1 and not n.startswith(m + ".") and not m.startswith(n + "."):
                # a package __init__ importing its own submodules is not a circle
                if not (n == _part(n) and stack[stack.index(n):][1:2] and stack[stack.index(n) + 1].startswith(n)):
                    pytest.fail("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_tvad_imports_sit_at_the_top_of_modules():
    lazy = [f"{mod}:{line} imports {target} inside a function" for mod, target, line, top in _imports()
            if not top and mod not in LAZY_OK]
    assert not lazy, "\n".join(lazy)


def test_import_tvad_is_light():
    code = ("import sys, tvad, tvad.config, tvad.data, tvad.metrics, tvad.corpus, tvad.evaluate.store, "
            "tvad.evaluate.tables\n"
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PKG.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"heavy imports pulled in by the light parts: {out.stdout}"
    # and the lazy public API still resolves
    out = subprocess.run([sys.executable, "-c", "import tvad; print(tvad.load.__module__, tvad.TVAD.__name__)"],
                         capture_output=True, text=True, timeout=300, cwd=PKG.parent)
    assert out.returncode == 0 and "TVAD" in out.stdout, out.stderr
