"""The package layout as a contract: no import cycles, imports point downward, small files and functions.

The import graph is read from the source (an AST scan of every ``import`` / ``from ... import``, including those
inside functions), so a function-level import cannot hide a cycle. ``from radae.pkg import name`` counts as an
import of ``radae.pkg.name`` when that is a module, else of ``radae.pkg``; importing ``radae.a.b`` does not count as
importing the package ``radae.a`` itself.
"""
from __future__ import annotations

import ast
from pathlib import Path

RADAE = Path(__file__).resolve().parents[2] / "radae"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
#: a longer function says why in its docstring with this marker
LONG_MARKER = "Long because"


def _module_name(path: Path) -> str:
    rel = path.relative_to(RADAE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(RADAE.rglob("*.py"))}


def _resolve(mod: str, level: int, target: str | None, here: str, is_pkg: bool) -> str:
    if level == 0:
        return target or ""
    base = here.split(".") if is_pkg else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, node.level, node.module, name, is_pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                if t.startswith("radae"):
                    while t not in mods and "." in t:  # radae.pkg.mod.attr -> radae.pkg.mod
                        t = t.rsplit(".", 1)[0]
                    if t in mods and t != name:
                        graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_scan_sees_function_level_imports_and_finds_a_planted_cycle():
    g = import_graph()
    assert "radae.runner" in g["radae.cli.pipeline"]  # the CLI imports the runner inside its commands only
    planted = {k: set(v) for k, v in g.items()}
    planted["radae.util.fsutil"].add("radae.cli")
    assert any("radae.util.fsutil" in c and "radae.cli" in c for c in _cycles(planted))


def test_no_import_cycles_among_radae_modules():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_only_the_cli_imports_the_runner_and_the_stages():
    bad = []
    for mod, deps in import_graph().items():
        for d in deps:
            cli = mod == "radae.cli" or mod.startswith("radae.cli.")
            if d == "radae.runner" and not cli:
                bad.append(f"{mod} imports {d}")
            if d.startswith("radae.stages") and not cli and mod != "radae.runner":
                bad.append(f"{mod} imports {d}")
    assert not bad, bad


def test_util_and_io_import_nothing_above_them():
    allowed = {"radae.util": ("radae.util",), "radae.io": ("radae.io", "radae.util")}
    bad = [f"{m} imports {d}" for m, deps in import_graph().items() for layer, ok in allowed.items()
           if m.startswith(layer + ".") or m == layer for d in deps if not d.startswith(ok) and d != "radae"]
    assert not bad, bad


def test_no_file_over_the_line_limit():
    long = {str(p.relative_to(RADAE.parent)): n for p in RADAE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_stage_adapters_are_thin():
    fat = {p.name: n for p in (RADAE / "stages").glob("*.py") if (n := len(p.read_text().splitlines())) > 200}
    assert not fat, f"stage adapters over 200 lines: {fat}"


def test_no_function_over_the_line_limit_unless_its_docstring_says_why():
    long = []
    for p in RADAE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and LONG_MARKER not in (ast.get_docstring(node) or ""):
                    long.append(f"{p.relative_to(RADAE.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (say why with '{LONG_MARKER} ...'): {long}"


def test_no_python_dash_m_entry_points_but_the_cli():
    mains = [str(p.relative_to(RADAE.parent)) for p in RADAE.rglob("*.py")
             if p.parent != RADAE / "cli" and (p.name == "__main__.py" or 'if __name__ == "__main__"' in p.read_text())]
    assert not mains, f"entry points outside radae/cli/: {mains}"
