"""The import rules of docs/architecture.md, read from the source tree (no module is imported).

- the domain (``crm_platform``) never imports Dagster, except its two entry points: ``cli`` and
  ``definitions``;
- the domain never imports the Dagster side (``assets``, ``resources``, ``sensors``);
- a stage imports only ``core``, ``contracts``, itself and the stages before it in the chain;
- no import circle anywhere in the project.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("crm_platform", "assets", "resources", "sensors")
# the chain, in order: a stage may import the stages before it, never one after it
CHAIN = ("core", "contracts", "ingest", "staging", "identity", "golden", "customer360", "features", "marts",
         "ml", "alerts", "reports", "governance")
# beside the chain: the demo world is generated from the foundations only
SIDE = {"demo": {"core", "contracts"}}
ENTRY_POINTS = ("cli", "definitions")
DAGSTER_SIDE = ("assets", "resources", "sensors")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, wherever it stands (in a function too).
    ``from package import submodule`` names the submodule."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            found += [(node.lineno, m) for m in (subs if len(subs) == len(node.names) else [base, *subs])]
    return found


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "crm_platform" and len(parts) > 1 else None


def violations(root: Path) -> list[str]:
    known = modules(root)
    out = []
    for name, path in known.items():
        where = f"{path.relative_to(root)}"
        own = stage(name)
        for line, target in imports(name, path, known):
            top = target.split(".")[0]
            if name.startswith("crm_platform") and own not in ENTRY_POINTS:
                if top == "dagster" or top.startswith("dagster_"):
                    out.append(f"{where}:{line} imports {target}: the domain never imports Dagster")
                if top in DAGSTER_SIDE:
                    out.append(f"{where}:{line} imports {target}: the domain never imports the Dagster side")
            other = stage(target) if top == "crm_platform" else None
            if own is None or other is None or other == own or own in ENTRY_POINTS:
                continue
            if own in SIDE:
                allowed = SIDE[own]
            elif own in CHAIN:
                allowed = set(CHAIN[:CHAIN.index(own)])
            else:
                out.append(f"{where}: the package crm_platform.{own} is neither in the chain nor beside it")
                continue
            if other not in allowed:
                out.append(f"{where}:{line} imports {target}: {own} may import only "
                           f"{', '.join(sorted(allowed)) or 'nothing of the domain'}")
    return out + circles(known)


def circles(known: dict[str, Path]) -> list[str]:
    """Every import circle (a strongly connected set of modules), ignoring a module's import of the
    packages it lives in (Python runs those first anyway)."""
    graph = {name: sorted({t for _, t in imports(name, path, known)
                           if t in known and t != name and not name.startswith(t + ".")})
             for name, path in known.items()}
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):                          # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append("import circle: " + " -> ".join(sorted(group)))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_project_keeps_its_import_rules():
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_rules_catch_dagster_in_a_stage_a_stage_importing_a_later_one_and_a_circle(tmp_path):
    root = _tree(tmp_path, {
        "crm_platform/__init__.py": "",
        "crm_platform/cli/__init__.py": "import dagster\n",                    # allowed: an entry point
        "crm_platform/core/__init__.py": "",
        "crm_platform/core/a.py": "from crm_platform.marts import b\n",      # runs back up
        "crm_platform/marts/__init__.py": "",
        "crm_platform/marts/b.py": "import dagster as dg\nfrom crm_platform.core import a\n",
        "crm_platform/ml/__init__.py": "",
        "crm_platform/ml/c.py": "def f():\n    from assets import x\n",        # inside a function too
        "assets/__init__.py": "",
        "assets/x.py": "",
    })
    found = violations(root)
    assert any("core/a.py:1 imports crm_platform.marts.b: core may import only nothing" in v for v in found)
    assert any("marts/b.py:1 imports dagster" in v for v in found)
    assert any("ml/c.py:2 imports assets.x: the domain never imports the Dagster side" in v for v in found)
    assert "import circle: crm_platform.core.a -> crm_platform.marts.b" in found
    assert not any("cli" in v for v in found)
