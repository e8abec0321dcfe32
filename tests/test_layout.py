"""The seams of the layout: no import cycle between packages, registries that resolve, cores that keep the contract."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("utils", "configs", "datamodules", "evaluation", "lightning_modules", "rl", "benchmarks")


def package_imports() -> dict:
    """Top-level package -> {imported package: [file:line, ...]} over every import statement, module level or
    inside functions (a deferred import still ties two packages together)."""
    edges: dict = defaultdict(lambda: defaultdict(list))
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in PACKAGES and top != package:
                        edges[package][top].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return edges


def find_cycle(edges: dict):
    """A list of packages forming a cycle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in edges.get(node, {}):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for package in sorted(edges):
        if package not in state:
            found = visit(package)
            if found:
                return found
    return None


def test_no_import_cycle_between_packages():
    edges = package_imports()
    cycle = find_cycle(edges)
    where = [f"{a} -> {b}: {edges[a][b][:3]}" for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, f"import cycle {' -> '.join(cycle)}: {where}"
    assert not edges["utils"], "utils imports nothing of the other packages"


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": []}, "b": {}}) is None


def test_every_registry_entry_resolves():
    import lightning_modules  # noqa: F401 - registers its datamodule
    from datamodules import DATAMODULES
    from lightning_modules import MODULES
    from rl.agents import AGENTS
    from rl.builders import ENVS

    for registry in (DATAMODULES, MODULES, ENVS):
        for name in registry.names():
            assert callable(registry.get(name)), (registry.kind, name)
    with pytest.raises(KeyError, match=r"unknown environment 'x'; expected one of \['face_age', 'mnist_task', 'transform'\]"):
        ENVS.get("x")
    for name, spec in AGENTS.items():
        assert spec.params.__dataclass_fields__ and callable(spec.build) and callable(spec.act), name


def test_every_core_keeps_the_batched_core_contract():
    from rl.envs import BatchedCore, RowStreams
    from tests.test_face_age_env import transparent_core
    from tests.test_rl_agents import make_core as mnist_core
    from tests.test_transform_env import make_core as transform_core

    for core in (mnist_core(2, 0), transparent_core(num_envs=2), transform_core(num_envs=2)):
        assert isinstance(core, BatchedCore) and isinstance(core, RowStreams), type(core).__name__
        spawned = core.spawn(3, 5)
        assert type(spawned) is type(core) and spawned.num_envs == 3
        assert spawned.reset().shape == (3, core.obs_dim)
