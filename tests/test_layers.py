"""The package's shape holds: the layers contract, no import circle, lazy imports that say why.

docs/architecture.md draws the layers; these tests fail when a change breaks them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backupctl"
# The one circle allowed: cli.app registers each cli/cmd_*.py module, and each of them decorates its
# commands with cli.app's typer app.
CLI_REGISTRATION = "backupctl.cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_layers_contract_holds() -> None:
    """`lint-imports` checks pyproject's layers contract (cli > serve > commands > supervise > checks >
    restore > litestream > host > config > kinds > the top modules): each imports only from below."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout, proc.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_outside_the_cli_registration() -> None:
    """Counting imports inside functions too: no two modules reach each other, except cli.app and the
    command modules it registers."""
    grimp = pytest.importorskip("grimp")
    built = grimp.build_graph("backupctl", exclude_type_checking_imports=True)
    graph = {m: set(built.find_modules_directly_imported_by(m)) for m in built.modules}
    circles = _cycles(graph)
    outside = [c for c in circles if not all(m == CLI_REGISTRATION or m.startswith(CLI_REGISTRATION + ".") for m in c)]
    assert not outside, outside
    # and the test sees circles at all: the CLI registration is one
    assert any("backupctl.cli.app" in c for c in circles)


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, source) of each import of a backupctl module inside a function or class."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    top: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in top:
            continue
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("backupctl"):
            found.append((node.lineno, lines[node.lineno - 1]))
        elif isinstance(node, ast.Import) and any(a.name.startswith("backupctl") for a in node.names):
            found.append((node.lineno, lines[node.lineno - 1]))
    return found


def _in_import_block(line: str) -> bool:
    """An import line, or a line of a parenthesised import's names."""
    text = line.strip()
    if text.startswith(("from ", "import ")) or text == ")":
        return True
    names = text.replace(",", "").replace(" as ", "").replace("_", "").replace(" ", "")
    return text.endswith(",") and names.isalnum()


def _says_why(lines: list[str], lineno: int) -> bool:
    """An import is explained by `# lazy: <reason>` on its line or above its block of imports."""
    if "# lazy:" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and _in_import_block(lines[i]):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("# lazy:") and len(lines[i].split("# lazy:", 1)[1].strip()) > 3


def test_every_import_inside_a_function_says_why() -> None:
    """A function-level import of backupctl's own modules is kept only where it buys something (a fast
    path that must not load it, a rarely run branch, the kinds registry), and says so."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for lineno, text in _function_level_imports(path):
            if not _says_why(lines, lineno):
                unexplained.append(f"{path.relative_to(ROOT)}:{lineno}: {text.strip()}")
    assert not unexplained, "\n".join(unexplained)


def test_at_most_twelve_modules_at_the_top_of_the_package() -> None:
    """The top of backupctl/ holds the foundation only (errors, paths, owned...); the rest lives in
    the package of its layer."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 12, top
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["checks", "cli", "commands", "config", "host", "kinds", "litestream", "restore", "serve", "supervise"]


def test_the_checker_of_lazy_imports_can_fail(tmp_path: Path) -> None:
    """The rule above is not vacuous: an unexplained function-level import is found, an explained one
    is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def a():\n    from backupctl import errors\n    return errors\n\n\n"
        "def b():\n    # lazy: only this branch needs it\n    from backupctl import paths\n    from backupctl import owned\n"
        "    return paths, owned\n"
    )
    imports = _function_level_imports(sample)
    lines = sample.read_text().splitlines()
    assert [n for n, _ in imports] == [2, 8, 9]
    assert [_says_why(lines, n) for n, _ in imports] == [False, True, True]
