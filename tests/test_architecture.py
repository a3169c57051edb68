"""The layers of ARCHITECTURE.md hold: who may import whom, every module placed, nothing product-side points into tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer, and the first-party packages it may import (its own included).
LAYERS = {
    "clipchat": {"clipchat"},
    "vision": {"clipchat", "vision"},
    "storage": {"clipchat", "storage"},
    "dialogue": {"clipchat", "vision", "dialogue"},
    "bot.engine": {"clipchat", "vision", "dialogue", "bot.engine"},
    "bot.core": {"clipchat", "vision", "dialogue", "storage", "bot.engine", "bot.core"},
    "bot.adapter": {"clipchat", "vision", "dialogue", "storage", "bot.engine", "bot.core", "bot.adapter"},
    "bot.ops": {"clipchat", "vision", "dialogue", "storage", "bot.engine", "bot.core", "bot.adapter", "bot.ops"},
}
FIRST_PARTY = ("clipchat", "vision", "storage", "dialogue", "bot", "tests", "bench")
HANDLERS = ("handlers", "commands", "admin", "jobs")  # they unpack updates and call the core, nothing lower


def modules(layer: str) -> list[Path]:
    folder = ROOT / layer.replace(".", "/")
    return sorted(path for path in folder.glob("*.py"))


def imports(path: Path, package: str) -> set[str]:
    """Every module `path` imports, relative imports resolved, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    for layer in sorted(LAYERS, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_itself_and_the_layers_below(layer: str) -> None:
    wrong = []
    for path in modules(layer):
        for name in imports(path, layer):
            first_party = name.split(".")[0] in FIRST_PARTY
            if first_party and layer_of(name) not in LAYERS[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if name.split(".")[0] == "telegram" and layer not in ("bot.adapter", "bot.ops"):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}: only the adapter speaks Telegram")
    assert not wrong


def test_handlers_call_the_core_only() -> None:
    wrong = [f"{name}.py imports {module}" for name in HANDLERS
             for module in imports(ROOT / "bot" / "adapter" / f"{name}.py", "bot.adapter")
             if module.split(".")[0] in ("storage", "vision", "dialogue") or module.startswith("bot.engine")]
    assert not wrong


def test_bot_holds_no_module_outside_its_layers() -> None:
    assert sorted(p.name for p in (ROOT / "bot").glob("*.py")) == ["__init__.py"]


def test_architecture_md_names_every_module_in_exactly_one_layer() -> None:
    table = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        row = re.match(r"\|[^|]+\| `([\w/]+)/` \| ([\w, ]+) \|", line)
        if row:
            package = row.group(1).replace("/", ".")
            names = [name.strip() for name in row.group(2).split(",")]
            assert package not in table and len(names) == len(set(names)), line
            table[package] = set(names)
    assert set(table) == set(LAYERS)
    for layer, named in table.items():
        actual = {path.stem for path in modules(layer)} - {"__init__", "__main__"}
        assert named == actual, (layer, named ^ actual)


def test_nothing_in_the_product_points_into_tests() -> None:
    mentions = [f"{path.relative_to(ROOT)}: {line.strip()}" for layer in LAYERS for path in modules(layer)
                for line in path.read_text().splitlines() if re.search(r"\btests[./]", line)]
    assert not mentions
