"""The one-way layers, read from every import statement of every module (at module level and inside
functions, parsed, not run):

    config <- db <- curation, trainer <- jobs <- workers;   ui and vitpro use jobs to send work

config imports nothing of ours; db only config; curation db and config; trainer curation, db and config;
jobs (job specs, sending) those four; workers (the Celery app and the handlers) those and jobs; ui and
vitpro everything but workers (the command line may start the web app, the web app never imports the
command line). No cycle between packages. ui/ and vitpro/ import no model library, Celery or workers at
module level, nor does jobs/ (the web server and the command line import it).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "db", "curation", "trainer", "jobs", "workers", "ui", "vitpro")
_DOMAIN = {"config", "db", "curation", "trainer"}
MAY_IMPORT: dict[str, set[str]] = {
    "config": set(),
    "db": {"config"},
    "curation": {"config", "db"},
    "trainer": {"config", "db", "curation"},
    "jobs": _DOMAIN,
    "workers": _DOMAIN | {"jobs"},
    "ui": _DOMAIN | {"jobs"},
    "vitpro": _DOMAIN | {"jobs", "ui"},
}
# (file, function) -> packages it may import beyond its layer: `vitpro worker` runs the workers' Celery app
EXCEPTIONS: dict[tuple[str, str], set[str]] = {("vitpro/commands/worker.py", "worker"): {"workers"}}
HEAVY = {"torch", "transformers", "open_clip", "celery", "kombu", "peft", "workers"}
LIGHT_AT_IMPORT = ("ui", "vitpro", "jobs")  # packages that must not import HEAVY at module level


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository
    line: int
    target: str  # absolute module name
    function: str | None  # the innermost function it is inside; None: module level

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[Import]:
    rel = str(path.relative_to(REPO))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(rel, child.lineno, alias.name, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append(Import(rel, child.lineno, target, function))
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel), None)
    return found


def _all_imports() -> dict[str, list[Import]]:
    """Package -> the imports of its modules."""
    return {package: [i for path in sorted((REPO / package).rglob("*.py")) for i in _imports(path)] for package in PACKAGES}


def _top(target: str) -> str:
    return target.split(".", 1)[0]


def _report(title: str, offending: list[str]) -> str:
    return f"{title} ({len(offending)}):\n  " + "\n  ".join(offending)


def test_every_import_follows_the_layer_order():
    offending = []
    for package, imports in _all_imports().items():
        for i in imports:
            other = _top(i.target)
            if other == package or other not in PACKAGES:
                continue
            allowed = MAY_IMPORT[package] | EXCEPTIONS.get((i.file, i.function or ""), set())
            if other not in allowed:
                offending.append(f"{i.where}: {package} imports {i.target}" + (f" (in {i.function})" if i.function else ""))
    assert not offending, _report("imports against the layer order", offending)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return groups


def test_no_cycle_between_packages():
    imports = _all_imports()
    edges = {p: {_top(i.target) for i in imports[p]} & set(PACKAGES) - {p} for p in PACKAGES}
    offending = []
    for group in _cycles(edges):
        for package in group:
            offending += [f"{i.where}: {package} imports {i.target}" for i in imports[package] if _top(i.target) in set(group) - {package}]
    assert not offending, _report("imports that close a cycle between packages", offending)


def test_the_web_app_the_command_line_and_the_job_specs_import_no_heavy_library_at_module_level():
    imports = _all_imports()
    offending = [f"{i.where}: {package} imports {i.target} at module level"
                 for package in LIGHT_AT_IMPORT for i in imports[package] if i.function is None and _top(i.target) in HEAVY]
    assert not offending, _report("module-level imports of model libraries, Celery or workers", offending)


def test_the_checks_see_what_they_check(tmp_path):
    """The walk finds imports in functions, resolves relative ones, and the cycle search finds a cycle."""
    found = {(i.target, i.function) for i in _imports(REPO / "workers" / "runtime.py")}
    assert ("db.app.engine", None) in found and ("workers.jobs.registry", "_handlers") in found
    assert ("workers.app", "_send") in found and ("jobs.broker", "_send") in found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
