"""The layering as a test: leyline ← eventstore ← {projections, domains} ← ops, the domain order, no cycles.

Every .py under the production packages is parsed with `ast`; every import in it counts, at module level,
inside functions and under TYPE_CHECKING alike. A package may import only the rooms below it (migrations
may import projections; projections and domains never import each other), and a domain only the domains
to its left in the order README's Layout section writes down (the one place that order lives). The
packages and the domains are the nodes of a graph whose edges are their imports; it has no cycle.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("leyline", "eventstore", "projections", "domains", "migrations", "ops")
# What each room may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "leyline": frozenset(),
    "eventstore": frozenset({"leyline"}),
    "projections": frozenset({"leyline", "eventstore"}),
    "domains": frozenset({"leyline", "eventstore"}),
    "migrations": frozenset({"leyline", "eventstore", "projections"}),
    "ops": frozenset({"leyline", "eventstore", "projections", "domains", "migrations"}),
}
ORDER_PATTERN = re.compile(r"in layer order[^:\n]*:\s*([a-z]+(?:,\s*[a-z]+)+)")


def domain_order(readme: Path) -> tuple[str, ...]:
    """The domains in layer order, as README's Layout section lists them."""
    layout = readme.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    found = ORDER_PATTERN.search(layout)
    assert found, "README's Layout section must list the domains 'in layer order: a, b, …'"
    return tuple(name.strip() for name in found.group(1).split(","))


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, resolving relative ones and `from pkg import sub`."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                as_path = root / submodule.replace(".", "/")
                is_module = as_path.is_dir() or as_path.with_suffix(".py").is_file()
                yield node.lineno, submodule if is_module else base


def unit_of(module: str) -> str | None:
    """The node a module belongs to: its top-level package, or `domains.<name>` for a domain."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "domains" and len(parts) > 1:
        return f"domains.{parts[1]}"
    return parts[0]


def edge_violation(source: str, target: str, order: Sequence[str]) -> str | None:
    """Why an import from unit `source` of unit `target` breaks the layering, or None."""
    room, to_room = source.split(".")[0], target.split(".")[0]
    if room != to_room:
        return None if to_room in ALLOWED[room] else f"{room} may not import {to_room}"
    if room != "domains" or source == target or "." not in target:
        return None
    mine, theirs = source.split(".")[1], target.split(".")[1]
    for name in (mine, theirs):
        if name not in order:
            return f"domain {name} is not in README's layer order {', '.join(order)}"
    if order.index(theirs) >= order.index(mine):
        return f"domain {mine} may import only domains to its left ({', '.join(order)}), not {theirs}"
    return None


def import_graph(root: Path) -> dict[tuple[str, str], list[str]]:
    """(unit, imported unit) -> where: 'path:line imports module'."""
    edges: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = unit_of(module_name(root, path))
            assert source is not None
            for line, module in imported_modules(root, path):
                target = unit_of(module)
                if target is not None and target != source:
                    where = f"{path.relative_to(root)}:{line} imports {module}"
                    edges.setdefault((source, target), []).append(where)
    return edges


def cycles(edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for source, target in edges:
        graph.setdefault(source, []).append(target)
        graph.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layering_problems(root: Path, order: Sequence[str]) -> list[str]:
    edges = import_graph(root)
    problems = []
    for (source, target), places in sorted(edges.items()):
        reason = edge_violation(source, target, order)
        if reason is not None:
            problems.extend(f"{place}: {reason}" for place in places)
    problems.extend(f"import cycle between {' and '.join(cycle)}" for cycle in cycles(list(edges)))
    return problems


def test_the_code_respects_the_layering() -> None:
    problems = layering_problems(ROOT, domain_order(ROOT / "README.md"))
    assert not problems, "\n".join(problems)


def test_every_domain_package_has_a_place_in_the_order() -> None:
    order = domain_order(ROOT / "README.md")
    packages = {p.parent.name for p in (ROOT / "domains").glob("*/__init__.py")}
    assert packages <= set(order), f"domains missing from README's layer order: {packages - set(order)}"


def plant(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(root).parents:
        if parent != Path("."):
            (root / parent / "__init__.py").touch()
    path.write_text(source)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the production packages to plant imports in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("relative", "source", "reason"),
    [
        ("leyline/planted.py", "def f():\n    import ops.cli\n", "leyline may not import ops"),
        ("eventstore/planted.py", "from projections import db\n", "eventstore may not import projections"),
        ("projections/planted.py", "from domains.tolaria import aggregate\n", "projections may not import"),
        ("domains/karn/planted.py", "def f():\n    from domains.tolaria import trainer\n", "only domains"),
        ("domains/urza/planted.py", "from ..tezzeret import jobs\n", "domain urza may import only"),
        ("domains/tolaria/planted.py", "if TYPE_CHECKING:\n    import ops.compose\n", "domains may not"),
    ],
)
def test_a_planted_upward_import_fails_the_check(tree: Path, relative: str, source: str, reason: str) -> None:
    plant(tree, relative, source)
    problems = layering_problems(tree, domain_order(ROOT / "README.md"))
    assert problems and any(reason in p and relative in p for p in problems), problems


def test_a_planted_cycle_is_reported(tree: Path) -> None:
    plant(tree, "eventstore/planted.py", "import leyline\n")
    plant(tree, "leyline/planted.py", "from eventstore import planted\n")
    problems = layering_problems(tree, domain_order(ROOT / "README.md"))
    assert "import cycle between eventstore and leyline" in problems


def test_the_order_is_read_from_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Layout\n\n```\ndomains/  in layer order: karn, urza, tolaria\n```\n\n## Next\n"
    )
    assert domain_order(readme) == ("karn", "urza", "tolaria")
    readme.write_text("# x\n\n## Layout\n\nno order here\n")
    with pytest.raises(AssertionError, match="layer order"):
        domain_order(readme)
