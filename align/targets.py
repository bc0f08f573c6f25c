"""Targets: the CLIP text encoder's hidden states for each caption, computed once and cached on disk.

A target is `last_hidden_state` (77 × 1024 for SD 2.1), exactly what the pipeline feeds the UNet. The cache
lives in `<cache_dir>/<encoder fingerprint>/`: shards of float16 rows (memory-mapped when read), an index
from caption to row, and the two constant states every consumer needs: the encoding of "" (the
unconditional input for classifier-free guidance) and the BOS state at position 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hearing.text_states import encode_captions

INDEX_FILE = "index.json"
EMPTY_FILE = "empty.npy"


def encoder_fingerprint(text_encoder, tokenizer) -> str:
    """A key that changes whenever the text encoder's weights, config or tokenizer change."""
    digest = hashlib.sha256()
    digest.update(text_encoder.config.to_json_string(use_diff=False).encode())
    digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    digest.update(str(tokenizer.model_max_length).encode())
    for name, tensor in sorted(text_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class TargetCache:
    """Caption → target rows, computed in batches the first time a caption is seen and reused ever after.

    >>> cache = TargetCache("cache/targets", text_encoder, tokenizer)
    >>> rows = cache.ensure(captions)          # computes only the captions not cached yet
    >>> targets = cache.get(rows[:8])           # (8, 77, 1024) float32, read from memory-mapped shards
    """

    def __init__(self, cache_dir: str | Path, text_encoder=None, tokenizer=None, *, fingerprint: str | None = None, batch_size: int = 64):
        if fingerprint is None:
            if text_encoder is None or tokenizer is None:
                raise ValueError("TargetCache needs the text encoder and tokenizer, or the fingerprint of a cache already built")
            fingerprint = encoder_fingerprint(text_encoder, tokenizer)
        self.text_encoder, self.tokenizer, self.batch_size = text_encoder, tokenizer, batch_size
        self.fingerprint = fingerprint
        self.dir = Path(cache_dir) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        index_path = self.dir / INDEX_FILE
        self.index: dict[str, int] = json.loads(index_path.read_text())["captions"] if index_path.exists() else {}
        self.shard_sizes: list[int] = json.loads(index_path.read_text())["shards"] if index_path.exists() else []
        self._shards: list[np.ndarray] = [np.load(self._shard_path(i), mmap_mode="r") for i in range(len(self.shard_sizes))]
        self.encoder_calls = 0  # how many batches the text encoder has run: lets tests see the cache work
        if not (self.dir / EMPTY_FILE).exists():
            _atomic_save(self.dir / EMPTY_FILE, self._encode([""])[0].astype(np.float32))
        self.empty_embedding = torch.from_numpy(np.load(self.dir / EMPTY_FILE))

    @property
    def bos_embedding(self) -> torch.Tensor:
        """Position 0: under causal attention the BOS state is the same for every caption."""
        return self.empty_embedding[0]

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, caption: str) -> bool:
        return caption in self.index

    def _shard_path(self, i: int) -> Path:
        return self.dir / f"shard-{i:05d}.npy"

    def _encode(self, captions: list[str]) -> np.ndarray:
        if self.text_encoder is None:
            raise ValueError(f"{len(captions)} captions are not cached in {self.dir} and no text encoder was given to compute them")
        self.encoder_calls += 1
        return encode_captions(captions, self.text_encoder, self.tokenizer).float().cpu().numpy()

    def ensure(self, captions: list[str], progress: bool = True) -> list[int]:
        """Row index of each caption, computing (in batches) and storing those not cached yet."""
        missing = list(dict.fromkeys(c for c in captions if c not in self.index))
        if missing:
            rows = []
            batches = range(0, len(missing), self.batch_size)
            for start in tqdm(batches, desc="CLIP targets", unit="batch", disable=not progress or len(batches) < 2):
                rows.append(self._encode(missing[start : start + self.batch_size]).astype(np.float16))
            shard = len(self.shard_sizes)
            _atomic_save(self._shard_path(shard), np.concatenate(rows))
            first = sum(self.shard_sizes)
            self.index.update({caption: first + i for i, caption in enumerate(missing)})
            self.shard_sizes.append(len(missing))
            self._shards.append(np.load(self._shard_path(shard), mmap_mode="r"))
            tmp = self.dir / (INDEX_FILE + ".tmp")
            tmp.write_text(json.dumps({"shards": self.shard_sizes, "captions": self.index}))
            os.replace(tmp, self.dir / INDEX_FILE)  # the index names a shard only once the shard is whole
        return [self.index[c] for c in captions]

    def get(self, rows: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Targets for row indices, as float32 (len(rows), 77, hidden)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        bounds = np.cumsum([0] + self.shard_sizes)
        out = np.empty((len(rows), *self.empty_embedding.shape), dtype=np.float32)
        shard_of = np.searchsorted(bounds, rows, side="right") - 1
        for shard in np.unique(shard_of):
            pick = shard_of == shard
            out[pick] = self._shards[shard][rows[pick] - bounds[shard]]
        return torch.from_numpy(out)

    def lookup(self, captions: list[str]) -> torch.Tensor:
        return self.get(self.ensure(captions, progress=False))

    def sample(self, count: int, generator: torch.Generator | None = None, exclude: list[int] | None = None) -> torch.Tensor:
        """`count` random cached targets (extra negatives for the contrastive loss), avoiding `exclude` rows."""
        allowed = torch.ones(len(self), dtype=torch.bool)
        if exclude is not None:
            allowed[torch.as_tensor(exclude, dtype=torch.long)] = False
        pool = allowed.nonzero().squeeze(1)
        if len(pool) == 0 or count <= 0:
            return self.empty_embedding.new_zeros((0, *self.empty_embedding.shape))
        picks = pool[torch.randperm(len(pool), generator=generator)[:count]]
        return self.get(picks.numpy())


class CaptionTargets:
    """The targets of a caption vocabulary known before training (files or a Hub dataset): all computed into the
    TargetCache up front, so the text encoder is freed before training; `get` and `sample` take caption ids."""

    def __init__(self, cache: TargetCache, rows: torch.Tensor):
        self.cache, self.rows = cache, rows  # caption id → cache row

    def __len__(self) -> int:
        return len(self.cache)

    def get(self, captions: list[str], ids: list[int]) -> torch.Tensor:
        """(B, 77, D) float32 targets on the CPU."""
        return self.cache.get(self.rows[torch.as_tensor(ids, dtype=torch.long)])

    def sample(self, count: int, exclude: list[int]) -> torch.Tensor:
        """`count` cached targets of other captions than the ids in `exclude` (extra negatives)."""
        return self.cache.sample(count, exclude=self.rows[torch.as_tensor(exclude, dtype=torch.long)].tolist())


class StreamTargets:
    """Targets of the captions a stream brings, computed as they arrive (the text encoder stays loaded: a stream's
    captions are not known ahead) and kept in memory, the most recently used `capacity` of them, keyed by caption id."""

    def __init__(self, text_encoder, tokenizer, capacity: int = 20_000):
        from collections import OrderedDict

        self.text_encoder, self.tokenizer, self.capacity = text_encoder, tokenizer, capacity
        self.rows: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.encoder_calls = 0

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, captions: list[str], ids: list[int]) -> torch.Tensor:
        """(B, 77, D) float32 targets on the CPU; computes those not held, in one batch."""
        missing = list(dict.fromkeys((i, c) for i, c in zip(ids, captions) if i not in self.rows))
        if missing:
            self.encoder_calls += 1
            encoded = encode_captions([c for _, c in missing], self.text_encoder, self.tokenizer).to("cpu", torch.float16)
            self.rows.update({i: row for (i, _), row in zip(missing, encoded)})
        for i in ids:
            self.rows.move_to_end(i)
        while len(self.rows) > self.capacity:
            self.rows.popitem(last=False)
        return torch.stack([self.rows[i] for i in ids]).float()

    def sample(self, count: int, exclude: list[int]) -> torch.Tensor:
        """`count` held targets of other captions than `exclude` (extra negatives)."""
        banned = set(exclude)
        pool = [i for i in self.rows if i not in banned]
        picks = torch.randperm(len(pool))[:count].tolist()
        if not picks:
            return torch.zeros(0, *next(iter(self.rows.values())).shape)
        return torch.stack([self.rows[pool[p]] for p in picks]).float()
