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
    """Every module of a layer, its sub-packages' included (`vision/models/encoder.py`)."""
    folder = ROOT / layer.replace(".", "/")
    return sorted(
        path
        for path in folder.rglob("*.py")  # packages only: not Alembic's migration scripts
        if all((parent / "__init__.py").exists() for parent in path.parents if parent.is_relative_to(folder))
    )


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def package_of(path: Path) -> str:
    """The package a module's relative imports start from."""
    name = module_name(path)
    return name if path.stem == "__init__" else name.rsplit(".", 1)[0]


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
        for name in imports(path, package_of(path)):
            first_party = name.split(".")[0] in FIRST_PARTY
            if first_party and layer_of(name) not in LAYERS[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if name.split(".")[0] == "telegram" and layer not in ("bot.adapter", "bot.ops"):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}: only the adapter speaks Telegram")
    assert not wrong


def test_handlers_call_the_core_only() -> None:
    wrong = [
        f"{name}.py imports {module}"
        for name in HANDLERS
        for module in imports(ROOT / "bot" / "adapter" / f"{name}.py", "bot.adapter")
        if module.split(".")[0] in ("storage", "vision", "dialogue") or module.startswith("bot.engine")
    ]
    assert not wrong


def test_bot_holds_no_module_outside_its_layers() -> None:
    assert sorted(p.name for p in (ROOT / "bot").glob("*.py")) == ["__init__.py"]


def test_architecture_md_names_every_module_in_exactly_one_row() -> None:
    """Each row names a package (a layer or one of its sub-packages) and its modules; every module is in one row."""
    table: dict[str, set[str]] = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        row = re.match(r"\|[^|]+\| `([\w/]+)/` \| ([\w, ]+) \|", line)
        if row:
            package = row.group(1).replace("/", ".")
            names = [name.strip() for name in row.group(2).split(",")]
            assert package not in table and len(names) == len(set(names)), line
            table[package] = {f"{package}.{name}" for name in names}
    assert {layer_of(package) for package in table} == set(LAYERS)
    named = [module for modules_named in table.values() for module in modules_named]
    actual = {
        module_name(path) for layer in LAYERS for path in modules(layer) if path.stem not in ("__init__", "__main__")
    }
    assert sorted(named) == sorted(actual), set(named) ^ actual


def vision_modules(room: str) -> list[Path]:
    return modules(f"vision.{room}")


@pytest.mark.parametrize("room", ["models", "decoding", "intake", "catalog"])
def test_the_plain_path_never_imports_the_speed_paths(room: str) -> None:
    """Speed paths plug into the plain path from outside (`vision.pipeline`), never the other way round."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in vision_modules(room)
        for name in imports(path, package_of(path))
        if name == "vision.fast" or name.startswith("vision.fast.")
    ]
    assert not wrong


def test_nothing_the_bot_runs_imports_training() -> None:
    """Training is an extra (`clipchat[train]`): the bot, its engine and the vision it loads never need it."""
    runtime = [
        path
        for layer in LAYERS
        for path in modules(layer)
        if not module_name(path).startswith("vision.training") and module_name(path) != "vision.cli"
    ]
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in runtime
        for name in imports(path, package_of(path))
        if name == "vision.training" or name.startswith("vision.training.")
    ]
    assert not wrong


def test_nothing_in_the_product_points_into_tests() -> None:
    mentions = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for layer in LAYERS
        for path in modules(layer)
        for line in path.read_text().splitlines()
        if re.search(r"\btests[./]", line)
    ]
    assert not mentions


def test_the_core_takes_its_models_from_the_composition_root() -> None:
    """Which models serve (in this process, on Ray) is `adapter/application`'s choice: the core takes any
    `Models`, the stand-in of its unit tests (tests/fakes.py) included, and never loads or serves one itself."""
    choosing = {"LocalModels", "RayModels", "ModelFeatures", "load_models", "ray_serve", "local"}
    wrong = [
        f"{path.relative_to(ROOT)} imports {alias.name}"
        for path in modules("bot.core")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name in choosing
    ]
    assert not wrong
