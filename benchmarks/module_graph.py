"""Module sizes and import cycles of the ``appliance`` package (a structural check, run by
hand): the longest modules, how many exceed the 400-line guideline, and every cycle among
``appliance.*`` modules at run time: imports inside functions count, imports under
``if TYPE_CHECKING:`` (annotations only) do not, and a package ``__init__`` that
re-exports its own submodules is not counted as a cycle.

    .venv/bin/python benchmarks/module_graph.py [TREE]     (TREE: a checkout, default .)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / "appliance").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for w in graph.get(v, ()):
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

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    known = modules(root)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    # a package re-exporting its submodules is not a cycle: drop package -> own child
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in known.items()),
                   reverse=True)
    print(f"{len(known)} modules, {sum(s for s, _ in sizes)} lines; "
          f"{sum(1 for s, _ in sizes if s > 400)} over 400 lines")
    for size, name in sizes[:6]:
        print(f"  {size:5d}  {name}")
    found = cycles(graph)
    print(f"{len(found)} import cycle(s)")
    for comp in found:
        print("  " + " <-> ".join(comp))


if __name__ == "__main__":
    main()
