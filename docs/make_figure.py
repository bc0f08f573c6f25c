"""Draw the README's picture: what the shipped offline models draw for each example sound, four seeds a sound.

    python -m docs.make_figure                   # writes docs/images/world_examples.png

Each row is one example sound the app offers in world mode (app.example_files: a caption spoken by a voice no stage
trained on, or a real recording of an everyday sound from a source package no stage trained on), its label, and the
pictures `models/world` draws for it with seeds 0-3 (25 steps, guidance 3, as the app), enlarged pixel for pixel.
Every example gets its row (how the sound examples were chosen: examples/world/sounds/ATTRIBUTION.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from generate.pipeline import AudioToImagePipeline

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "images" / "world_examples.png"
SEEDS = 4
CELL = 96  # a 32×32 picture enlarged 3×
LABEL = 230


def example_rows() -> list[tuple[str, Path]]:
    """(label, file) for every example sound the app offers in world mode."""
    from app import example_files

    from world.scenes import BY_NAME

    def label(path: Path) -> str:  # a recorded sound is named by its caption, a spoken one by what is said
        return f"recorded: {BY_NAME[path.stem].caption}" if path.parent.name == "sounds" else f"said: “{path.stem.replace('_', ' ')}”"

    return [(label(Path(f)), Path(f)) for f in example_files("world")]


def main() -> Path:
    torch.set_num_threads(1)
    pipe = AudioToImagePipeline.from_pretrained(REPO / "models" / "world" / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rows = example_rows()
    sheet = Image.new("RGB", (LABEL + SEEDS * CELL, len(rows) * CELL), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, path) in enumerate(rows):
        images = pipe(str(path), num_images_per_prompt=SEEDS, num_inference_steps=25, guidance_scale=3.0,
                      generator=[torch.Generator().manual_seed(s) for s in range(SEEDS)]).images
        draw.text((8, r * CELL + CELL // 2 - 6), label, fill="black")
        for s, image in enumerate(images):
            sheet.paste(image.resize((CELL, CELL), Image.Resampling.NEAREST), (LABEL + s * CELL, r * CELL))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT)
    print(f"wrote {OUT} ({len(rows)} sounds × {SEEDS} seeds)")
    return OUT


if __name__ == "__main__":
    main()
