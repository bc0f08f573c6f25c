"""The project's parts import only downward: the foundation that hears a sound, then training, scoring and the model
definitions, then generation, evaluation, the world and the app on top. A new import that points up (or sideways
inside one floor) fails here, before it tangles the layout a reader relies on."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# each floor may import only from the floors below it
FLOORS = [
    ("hearing",),                            # decoding, windows, features, the encoder, the device rule
    ("architectures", "align", "scoring"),  # model configs, training the encoder, the CLAP + CLIP scorer
    ("generate",),                           # the pipelines and the CLI
    ("evaluation",),                         # scored runs and the cascade baseline
    ("world",),                              # the world in miniature, built and measured with all of the above
    ("app",),                                # the Gradio demo
]


def imports_between_parts() -> dict[str, set[str]]:
    """part → the other parts its modules import (absolute imports, at any depth of the file)."""
    parts = {name for floor in FLOORS for name in floor}
    found = {}
    for part in parts:
        files = [ROOT / "app.py"] if part == "app" else sorted((ROOT / part).rglob("*.py"))
        assert files, f"{part}: no Python files; FLOORS names a part that is gone"
        targets = set()
        for path in files:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                targets |= {name.split(".")[0] for name in names} & parts
        found[part] = targets - {part}
    return found


def test_every_part_imports_only_from_the_floors_below():
    floor_of = {name: level for level, floor in enumerate(FLOORS) for name in floor}
    upward = sorted(f"{part} → {target}" for part, targets in imports_between_parts().items() for target in targets
                    if floor_of[target] >= floor_of[part])
    assert not upward, f"imports that point up or sideways: {upward}"


def test_every_top_level_package_is_placed_on_a_floor():
    placed = {name for floor in FLOORS for name in floor}
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= placed, f"packages on no floor of FLOORS: {sorted(packages - placed)}"
