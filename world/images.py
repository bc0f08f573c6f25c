"""The world's pictures as tensors, grouped by caption, for the image-side training stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from align.data import read_metadata


class WorldImages:
    """The pictures of `<world>/images` whose captions are among `captions`, in memory as uint8 (N, 3, H, W), with each
    one's caption index."""

    def __init__(self, world_dir: str | Path, captions: list[str]):
        folder = Path(world_dir) / "images"
        rows = read_metadata(folder)
        if not rows:
            raise FileNotFoundError(f"no pictures in {folder}: build the world first (python -m world.build)")
        index = {c: i for i, c in enumerate(captions)}
        rows = [r for r in rows if r["caption"] in index]  # the pictures of these captions only (the clip stage: the shapes')
        self.captions = captions
        self.pixels = torch.from_numpy(np.stack([np.asarray(Image.open(folder / r["file_name"]).convert("RGB")) for r in rows])).permute(0, 3, 1, 2).contiguous()
        self.caption_ids = torch.tensor([index[r["caption"]] for r in rows])
        self.by_caption = [torch.nonzero(self.caption_ids == i).squeeze(1) for i in range(len(captions))]

    def __len__(self) -> int:
        return len(self.pixels)

    def one_per_caption(self, generator: torch.Generator) -> torch.Tensor:
        """Indices of one random picture of every caption: a batch in which no two items share a caption."""
        return torch.stack([ids[torch.randint(len(ids), (1,), generator=generator)][0] for ids in self.by_caption])

    def kind_weights(self, scenes: list[dict]) -> torch.Tensor:
        """kind_weights over these pictures' captions."""
        return kind_weights(self.caption_ids, scenes)

    @staticmethod
    def to_unit(pixels: torch.Tensor) -> torch.Tensor:
        """uint8 → float in [-1, 1], the VAE's range."""
        return pixels.float() / 127.5 - 1.0


def kind_weights(caption_ids: torch.Tensor, scenes: list[dict]) -> torch.Tensor:
    """A sampling weight per picture (its caption's index into `scenes`) so that shape pictures and sound pictures are
    drawn half and half, each kind uniformly within; all one kind when the other has no pictures."""
    is_sound = torch.tensor(["sound" in scenes[i] for i in caption_ids.tolist()], dtype=torch.bool)
    weights = torch.ones(len(caption_ids))
    for kind in (is_sound, ~is_sound):
        if kind.any():
            weights[kind] = 1.0 / kind.sum()
    return weights
