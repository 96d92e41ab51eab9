"""The layers show in the imports: mosaic/ is the library (no Prefect, no flows, tasks or CLI), tasks/ wraps it,
flows/ composes, mosaic_cli/ stays on top; and no module imports itself back through others. flows/ and tasks/ are
installed as mosaic_flows and mosaic_tasks, so a user's own `flows` or `tasks` cannot take their place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLED_AS = {"mosaic": "mosaic", "mosaic_cli": "mosaic_cli", "tasks": "mosaic_tasks", "flows": "mosaic_flows"}
PACKAGES = tuple(INSTALLED_AS)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = INSTALLED_AS[parts[0]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module this file imports, at the top or inside a function, resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def project_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def test_the_library_imports_neither_prefect_nor_the_layers_above_it():
    offenders = []
    for path in (ROOT / "mosaic").rglob("*.py"):
        bad = {m for m in imports_of(path) if m.split(".")[0] in ("prefect", "mosaic_flows", "mosaic_tasks", "mosaic_cli")}
        if bad:
            offenders.append(f"{module_name(path)} imports {sorted(bad)}")
    for path in (ROOT / "tasks").rglob("*.py"):
        bad = {m for m in imports_of(path) if m.split(".")[0] in ("mosaic_flows", "mosaic_cli")}
        if bad:
            offenders.append(f"{module_name(path)} imports {sorted(bad)}")
    assert not offenders, offenders


def test_there_are_no_import_cycles():
    graph = project_graph()
    # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_graph_sees_imports_inside_functions():
    """The check above is only worth something if it sees deferred imports: mosaic_cli imports flows lazily."""
    graph = project_graph()
    assert "mosaic_flows.server" in graph["mosaic_cli.server_commands"]
    assert "mosaic.driver" in graph["mosaic_flows.review"]


def test_no_module_imports_the_folders_by_their_bare_names():
    """`import flows` would work from the checkout and break everywhere else (or import a user's own flows)."""
    offenders = [f"{module_name(p)} imports {sorted(bad)}" for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                 if (bad := {m for m in imports_of(p) if m.split(".")[0] in ("flows", "tasks")})]
    assert not offenders, offenders


def test_a_users_own_flows_and_tasks_packages_do_not_shadow_mosaics(tmp_path):
    for name in ("flows", "tasks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user\'s own package was imported')\n")
    code = ("import mosaic_flows.review, mosaic_tasks, mosaic_cli.main\n"
            "print(mosaic_flows.review.__file__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()) == ROOT / "flows" / "review.py"
