"""The floors of the house, checked on the source (import-linter checks the layers in CI; these
are the rules it cannot express). Each rule reads the package's own files with `ast`, so a
function-level import or one under TYPE_CHECKING counts as much as a top-level one."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import ddnsagent
from ddnsagent.errors import DdnsagentError

PACKAGE = Path(ddnsagent.__file__).parent


def modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(), str(path))


def imported(name: str, path: Path, node: ast.AST) -> list[str]:
    """The ddnsagent modules an import statement names (absolute, resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "ddnsagent"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1])
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if target.split(".")[0] != "ddnsagent":
        return []
    known = {n for n, _, _ in modules()}
    out = []
    for alias in node.names:  # `from ddnsagent import http` names a module
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in known else target)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path, tree in modules():
        edges = graph.setdefault(name, set())
        for node in ast.walk(tree):
            for target in imported(name, path, node):
                if target != name:
                    edges.add(target)
    return graph


def test_no_import_cycle_at_all() -> None:
    """No cycle, counting imports inside functions and under TYPE_CHECKING (a package's
    __init__ is not counted as imported by its own submodules: Python loads it first anyway)."""
    graph = import_graph()
    for name, edges in graph.items():
        edges -= {p for p in edges if name.startswith(p + ".")}
    seen: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if nxt not in seen:
                visit(nxt)
        path.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)


def test_every_lazy_import_says_why() -> None:
    """An import of our own modules inside a function is allowed only for start-up time, and
    then a `# lazy:` comment on it or just above it says what it saves."""
    undocumented = []
    for name, path, tree in modules():
        lines = path.read_text().splitlines()
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if not imported(name, path, node):
                    continue
                around = " ".join(lines[max(node.lineno - 3, 0) : node.lineno])
                if "# lazy:" not in around:
                    undocumented.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not undocumented, "function-level imports without a `# lazy:` reason: " + ", ".join(
        undocumented
    )


def _imports_of(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize(
    ("owner", "what", "forbidden"),
    [
        ("ddnsagent.process", "starts programs", {"subprocess", "asyncio.subprocess"}),
        ("ddnsagent.dnsclient", "talks DNS", {"dns.query", "dns.asyncquery"}),
    ],
)
def test_one_module_does_it(owner: str, what: str, forbidden: set[str]) -> None:
    others = []
    for name, path, tree in modules():
        source = path.read_text()
        uses = _imports_of(tree) & forbidden
        if owner == "ddnsagent.process" and "create_subprocess" in source:
            uses.add("create_subprocess_*")
        if uses and name != owner:
            others.append(f"{name} ({', '.join(sorted(uses))})")
    assert not others, f"only {owner} {what}; also: {others}"


def test_every_exception_derives_from_the_one_root() -> None:
    strays = []
    for info in pkgutil.walk_packages(ddnsagent.__path__, "ddnsagent."):
        if info.name.endswith("__main__"):
            continue
        module = __import__(info.name, fromlist=["_"])
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, DdnsagentError):
                strays.append(f"{info.name}.{cls.__name__}")
    assert not strays, "exceptions outside errors.DdnsagentError: " + ", ".join(strays)
