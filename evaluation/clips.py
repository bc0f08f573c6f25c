"""The clips of an evaluation run: from a local audiofolder (or a folder of audio files) or a `datasets` Hub id,
each with its caption when the data has one, read lazily, and each with its own noise seed; or from a stream
(WebDataset tar shards, or a Hub dataset with streaming=True), read clip by clip as the run reaches them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from hearing.audio import AudioError, load_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a", ".webm")


@dataclass
class Clip:
    index: int
    name: str
    source: object  # a path, or a function giving a Hub row's {"bytes", "path"}
    caption: str | None


def read_audio(source, max_seconds: float | None) -> np.ndarray:
    """A clip's sound, mono 16 kHz; a Hub row is fetched only now."""
    if callable(source):
        source = source()
    return load_audio(source, max_seconds=max_seconds)


def _unique(sources, captions, keys) -> list[tuple[object, str | None, object]]:
    """align.data gives one pair per caption; evaluation wants each clip once (with its first caption)."""
    seen, out = set(), []
    for source, caption, key in zip(sources, captions, keys):
        if key not in seen:
            seen.add(key)
            out.append((source, caption, key))
    return out


def read_clips(data: str, split: str = "test", audio_column: str | None = None, caption_column: str | None = None,
               label_column: str | None = None) -> list[Clip]:
    """Clips from a local audiofolder (`data/split/` or `data/`, metadata.jsonl/csv; or plain audio files) or a Hub id.

    Records are read with align.data (captions from a caption column, or made from labels); data with neither
    is read as audio only, and the caption similarities are left out.
    """
    from align.data import (CAPTION_COLUMNS, LABEL_COLUMNS, METADATA_FILES, HubAudioColumn, file_in_folder, pairs_from_folder,
                            pairs_from_hub_dataset, read_metadata)

    named = bool(caption_column or label_column)
    path = Path(data)
    if path.exists():
        folder = path / split if (path / split).is_dir() else path
        if not folder.is_dir():
            raise FileNotFoundError(f"--data {path}: not a folder. Give an audiofolder (metadata.jsonl + audio files) or a Hub dataset id.")
        if not any((folder / name).is_file() for name in METADATA_FILES):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{folder}: no metadata.jsonl/metadata.csv and no audio files ({', '.join(AUDIO_SUFFIXES)})")
            return [Clip(i, p.name, str(p), None) for i, p in enumerate(files)]
        column = audio_column or "file_name"
        rows = read_metadata(folder)
        if named or any(c in rows[0] for c in CAPTION_COLUMNS + LABEL_COLUMNS):
            pairs = pairs_from_folder(folder, column, caption_column=caption_column, label_column=label_column)
            items = _unique(pairs.sources, pairs.captions, pairs.sources)
        else:
            items = [(str(file_in_folder(folder, r[column], f"{folder}, row {n}")), None, None) for n, r in enumerate(rows, 1) if r.get(column)]
        return [Clip(i, os.path.relpath(s, folder), s, c) for i, (s, c, _) in enumerate(items)]

    from datasets import Audio, load_dataset

    try:
        dataset = load_dataset(data, split=split)
    except Exception as error:  # offline, unknown id, unknown split: say which and what to do
        raise FileNotFoundError(f"--data {data!r} is no local folder, and loading it from the Hub (split {split!r}) failed: {error}") from error
    column = audio_column or "audio"
    if named or any(c in dataset.column_names for c in CAPTION_COLUMNS + LABEL_COLUMNS):
        pairs = pairs_from_hub_dataset(dataset, column, caption_column=caption_column, label_column=label_column, name=f"{data}[{split}]")
        audio = pairs.sources  # lazy: a row's audio is read when its clip is evaluated, not all at once here
        positions = _unique(range(len(pairs)), pairs.captions, audio.rows)
        return [Clip(i, f"{data}[{split}]#{row}", partial(audio.__getitem__, p), c) for i, (p, c, row) in enumerate(positions)]
    if column not in dataset.column_names:
        raise ValueError(f"the dataset has no audio column {column!r} (it has {dataset.column_names}); name it with --audio-column")
    audio = HubAudioColumn(dataset.cast_column(column, Audio(decode=False)), column, list(range(len(dataset))))
    return [Clip(i, f"{data}[{split}]#{i}", partial(audio.__getitem__, i), None) for i in range(len(dataset))]


def _no_audio(key: str):
    raise AudioError(f"stream item {key} has no audio member (a .wav/.flac/... file, or the --audio-column)")


def stream_clips(data: str | None, shards: list[str] | None, split: str = "test", audio_column: str | None = None,
                 caption_column: str | None = None, label_column: str | None = None):
    """Clips of a stream, in its own order, each fetched only when the run reaches it: WebDataset tar shards
    (local paths or URLs, brace patterns) or a Hub dataset read with streaming=True. Nothing is listed or
    downloaded ahead, so a corpus larger than the disk can be evaluated; the order is the stream's (no shuffle),
    so clip i and its seed are the same in every run and a resumed run passes finished clips without decoding them."""
    from align.streaming import open_hub_stream, open_webdataset, shard_list, stream_clips as stream_rows

    try:
        source = open_webdataset(shard_list(shards)) if shards else open_hub_stream(data, None, split, audio_column or "audio")
    except Exception as error:  # a missing shard, offline, unknown id or split: say which
        what = f"--shards {' '.join(shards)}" if shards else f"--data {data!r} --streaming (split {split!r})"
        raise FileNotFoundError(f"{what}: the stream could not be opened: {error}") from error
    rows = stream_rows(source, audio_column=audio_column, caption_column=caption_column, label_column=label_column)
    for index, (key, audio, caption) in enumerate(rows):
        yield Clip(index, key, audio if audio is not None else partial(_no_audio, key), caption)


def clip_seed(seed: int, index: int) -> int:
    """The noise seed of clip `index`: from the run's seed and the index alone, so resuming changes nothing."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
