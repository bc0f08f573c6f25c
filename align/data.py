"""Audio-caption pairs for training: from a local audiofolder or a `datasets` Hub dataset.

A pair is an audio source (a path, or a Hub row's bytes/path) and a caption. Captions come from a caption
column, or are made from label column(s): "Rain,Thunder" → "The sound of rain, thunder". Every sound is
decoded by `hearing.audio.load_audio` (soundfile, no FFmpeg or torchcodec needed) to mono 16 kHz, then cut to
the encoder's window: a random crop in training, the centre in evaluation, short clips repeat-padded.

A corrupt, empty or unreadable file never stops a run: the dataset returns None for it (with a warning),
and the collator drops it and counts it in the batch's `skipped`, which the training loop logs. A metadata file
that is malformed, or names a file outside its folder (`../test/x.wav`, an absolute path, a symbolic link that
leads out), stops the run before it starts with a `DataError`: one line that names the file, the row and the fix.

    train, held_out = load_pairs(data_dir="data/synthetic")                      # test/ split if present
    train, held_out = load_pairs(dataset="user/fsd50k", label_column="labels")   # seeded split if no test split
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hearing.audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE, AudioError, fit_to_window, load_audio
from align.augment import FeatureAugment, item_seed
from hearing.features import pad_waves

logger = logging.getLogger(__name__)

DEFAULT_CAPTION_TEMPLATE = "The sound of {labels}"
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
HELD_OUT_FOLDERS = ("test", "validation", "valid", "val")
CAPTION_COLUMNS = ("caption", "text", "description")  # tried in order when no column is named
LABEL_COLUMNS = ("labels", "label", "tags", "category")


class DataError(ValueError):
    """Training or evaluation data that cannot be used as given: the message names the file, the row and the fix."""


def file_in_folder(folder: str | Path, name: str, where: str = "") -> Path:
    """`folder / name` for a file name from a metadata file, refused (DataError) unless it stays inside `folder`:
    no absolute path, no `..`, and no symbolic link on the way that leads out (a split must not read another split's
    files, e.g. a training row that names a held-out clip)."""
    folder = Path(folder)
    relative = Path(str(name))
    if relative.is_absolute() or relative.anchor or ".." in relative.parts:
        raise DataError(f"{where or folder}: file name {str(name)!r} leaves the data folder. Give a path relative to {folder}, "
                        "without '..'; copy or move the file into the folder.")
    path = folder / relative
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise DataError(f"{where or folder}: file name {str(name)!r} is a symbolic link (or lies under one) that leads out of the "
                        f"data folder, to {path.resolve()}. Copy the file into {folder} instead.")
    return path


def labels_to_caption(labels, template: str = DEFAULT_CAPTION_TEMPLATE, names: Sequence[str] | None = None) -> str | None:
    """Labels → a caption: "Rain,Thunder" or ["Rain", "Thunder"] → "The sound of rain, thunder".

    Accepts a comma-separated string, a list (of strings or of class indices with their `names`), or a
    list of such. Underscores become spaces, case is lowered, repeats are dropped; None when no label is left.
    """
    flat: list[str] = []

    def collect(value):
        if value is None:
            return
        if isinstance(value, (list, tuple, np.ndarray)):
            for v in value:
                collect(v)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if names is None:
                raise ValueError(f"label {value} is a class index but the dataset gives no class names to turn it into words")
            flat.append(names[int(value)])
        else:
            flat.extend(str(value).split(","))

    collect(labels)
    words = [" ".join(label.replace("_", " ").split()).lower() for label in flat]
    words = list(dict.fromkeys(w for w in words if w))
    return template.format(labels=", ".join(words)) if words else None


@dataclass
class AudioCaptionPairs:
    """Parallel lists: `sources[i]` (path str, bytes, or {"bytes", "path"} dict) is heard as `captions[i]`."""

    sources: Sequence
    captions: list[str]
    name: str = ""
    dropped_rows: int = 0  # metadata rows with no caption or no audio, left out when the pairs were read

    def __post_init__(self):
        if len(self.sources) != len(self.captions):
            raise ValueError(f"{len(self.sources)} audio sources but {len(self.captions)} captions")

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, indices: Sequence[int]) -> "AudioCaptionPairs":
        indices = [int(i) for i in indices]
        sources = self.sources.subset(indices) if isinstance(self.sources, HubAudioColumn) else [self.sources[i] for i in indices]
        return AudioCaptionPairs(sources, [self.captions[i] for i in indices], self.name)


@dataclass
class HubAudioColumn(Sequence):
    """A lazy view of a `datasets.Dataset` audio column cast to `Audio(decode=False)`: item i is {"bytes", "path"}.

    Lazy so that a large dataset's audio stays in its memory-mapped Arrow files, not in RAM; it pickles
    to DataLoader workers as a reference to those files.
    """

    dataset: object
    column: str
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.dataset[self.rows[i]][self.column]

    def subset(self, indices: Sequence[int]) -> "HubAudioColumn":
        return HubAudioColumn(self.dataset, self.column, [self.rows[i] for i in indices])


def _pick_column(available: Sequence[str], wanted: str | None, candidates: Sequence[str]) -> list[str]:
    """The column(s) to read: `wanted` (comma-separated names) if given, else the first candidate present."""
    if wanted:
        columns = [c.strip() for c in wanted.split(",") if c.strip()]
        missing = [c for c in columns if c not in available]
        if missing:
            raise ValueError(f"column(s) {missing} not found; the data has columns {list(available)}")
        return columns
    return [next(c for c in candidates if c in available)] if any(c in available for c in candidates) else []


def captions_for_row(row: dict, caption_columns: list[str], label_columns: list[str], template: str, label_names: dict) -> list[str]:
    """Every caption one row gives: one per caption column (a list value gives several), else one from its labels."""
    if caption_columns:
        captions = []
        for column in caption_columns:
            value = row.get(column)
            for caption in value if isinstance(value, (list, tuple)) else [value]:
                if caption is not None and str(caption).strip():
                    captions.append(" ".join(str(caption).split()))
        return captions
    labels = [row.get(column) for column in label_columns]
    names = next((label_names[c] for c in label_columns if label_names.get(c)), None)
    caption = labels_to_caption(labels, template, names)
    return [caption] if caption else []


def _columns(available: Sequence[str], caption_column: str | None, label_column: str | None, where: str) -> tuple[list[str], list[str]]:
    caption_columns = _pick_column(available, caption_column, CAPTION_COLUMNS) if not label_column else []
    label_columns = _pick_column(available, label_column, LABEL_COLUMNS) if not caption_columns else []
    if not caption_columns and not label_columns:
        raise ValueError(
            f"{where}: no caption or label column among {list(available)}. "
            "Name one with --caption-column (e.g. caption) or --label-column (e.g. labels)."
        )
    return caption_columns, label_columns


def read_metadata(folder: str | Path) -> list[dict]:
    """The rows of `folder/metadata.jsonl` (or `.csv`), as the `datasets` audiofolder layout stores them."""
    folder = Path(folder)
    for name in METADATA_FILES:
        path = folder / name
        if not path.exists():
            continue
        if name.endswith(".jsonl"):
            rows = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno}). "
                                        "Fix or remove the line.") from None
                    if not isinstance(row, dict):
                        raise DataError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object of columns "
                                        '(e.g. {"file_name": "a.wav", "caption": "rain"}). Fix or remove the line.')
                    rows.append(row)
            return rows
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    raise FileNotFoundError(f"{folder}: no {' or '.join(METADATA_FILES)}. An audiofolder needs one, with a file_name column and a caption or labels column.")


def pairs_from_folder(folder: str | Path, audio_column: str = "file_name", caption_column: str | None = None,
                      label_column: str | None = None, template: str = DEFAULT_CAPTION_TEMPLATE) -> AudioCaptionPairs:
    """Pairs from one audiofolder split: audio files next to a metadata file naming them and their caption or labels."""
    folder = Path(folder)
    rows = read_metadata(folder)
    if not rows:
        raise ValueError(f"{folder}: the metadata file has no rows")
    if audio_column not in rows[0]:
        raise ValueError(f"{folder}: metadata has no {audio_column!r} column (it has {list(rows[0])}); name the audio column with --audio-column")
    caption_columns, label_columns = _columns(list(rows[0]), caption_column, label_column, str(folder))
    sources, captions, dropped = [], [], 0
    metadata = next((folder / name for name in METADATA_FILES if (folder / name).exists()), folder)
    for number, row in enumerate(rows, 1):
        row_captions = captions_for_row(row, caption_columns, label_columns, template, {})
        if not row.get(audio_column) or not row_captions:
            dropped += 1
            continue
        path = str(file_in_folder(folder, row[audio_column], f"{metadata}, row {number}"))
        for caption in row_captions:
            sources.append(path)
            captions.append(caption)
    if dropped:
        logger.warning("%s: %d metadata rows have no audio file name or no caption/labels and were left out", folder, dropped)
    return AudioCaptionPairs(sources, captions, str(folder), dropped)


def pairs_from_hub_dataset(dataset, audio_column: str = "audio", caption_column: str | None = None,
                           label_column: str | None = None, template: str = DEFAULT_CAPTION_TEMPLATE, name: str = "dataset") -> AudioCaptionPairs:
    """Pairs from a loaded `datasets.Dataset`. The audio column is cast to `Audio(decode=False)` so that
    `datasets` hands over the file bytes (or path) untouched: no torchcodec/FFmpeg, soundfile decodes them."""
    from datasets import Audio

    if audio_column not in dataset.column_names:
        raise ValueError(f"the dataset has no audio column {audio_column!r} (it has {dataset.column_names}); name it with --audio-column")
    caption_columns, label_columns = _columns(dataset.column_names, caption_column, label_column, "dataset")
    dataset = dataset.cast_column(audio_column, Audio(decode=False))
    label_names = {}
    for column in label_columns:  # ClassLabel or a list of ClassLabel: class indices → names
        feature = dataset.features[column]
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        label_names[column] = names
    text = dataset.select_columns(caption_columns + label_columns)  # read the text without touching the audio
    rows, captions, dropped = [], [], 0
    for index, row in enumerate(text):
        row_captions = captions_for_row(row, caption_columns, label_columns, template, label_names)
        dropped += not row_captions
        for caption in row_captions:
            rows.append(index)
            captions.append(caption)
    if dropped:
        logger.warning("%d dataset rows have no caption/labels and were left out", dropped)
    return AudioCaptionPairs(HubAudioColumn(dataset, audio_column, rows), captions, name, dropped)


def seeded_split(count: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a reproducible train / held-out split (at least one held-out item, at least one to train on)."""
    if count < 2:
        raise ValueError(f"cannot split {count} pair(s) into training and held-out data; add data or give a test/ split")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    held_out = min(max(1, round(count * eval_fraction)), count - 1)
    return sorted(order[held_out:].tolist()), sorted(order[:held_out].tolist())


def load_pairs(data_dir: str | Path | None = None, dataset: str | None = None, *, dataset_config: str | None = None,
               split: str = "train", eval_split: str | None = None, audio_column: str | None = None,
               caption_column: str | None = None, label_column: str | None = None, template: str = DEFAULT_CAPTION_TEMPLATE,
               eval_fraction: float = 0.05, seed: int = 0) -> tuple[AudioCaptionPairs, AudioCaptionPairs]:
    """(training pairs, held-out pairs) from a local audiofolder (`data_dir`) or a Hub dataset id (`dataset`).

    Held-out data is the folder's test/ (or validation/) split, or the dataset's `eval_split`
    (default: "test" if it exists); otherwise a seeded `eval_fraction` of the training pairs.
    """
    if (data_dir is None) == (dataset is None):
        raise ValueError("give exactly one data source: --data-dir (a local audiofolder) or --dataset (a Hub dataset id)")
    columns = dict(caption_column=caption_column, label_column=label_column, template=template)
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"--data-dir {root}: no such folder")
        train_dir = root / split if (root / split).is_dir() else root
        train = pairs_from_folder(train_dir, audio_column or "file_name", **columns)
        held_out_dir = next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir() and root / name != train_dir), None)
        if held_out_dir is not None:
            return train, pairs_from_folder(held_out_dir, audio_column or "file_name", **columns)
    else:
        from datasets import load_dataset

        hub = dict(audio_column=audio_column or "audio", **columns)
        train = pairs_from_hub_dataset(load_dataset(dataset, dataset_config, split=split), name=f"{dataset}[{split}]", **hub)
        for name in [eval_split] if eval_split else ["test", "validation"]:
            try:
                return train, pairs_from_hub_dataset(load_dataset(dataset, dataset_config, split=name), name=f"{dataset}[{name}]", **hub)
            except ValueError as error:  # datasets raises ValueError for an unknown split
                if eval_split or "split" not in str(error).lower():
                    raise
    train_rows, held_out_rows = seeded_split(len(train), eval_fraction, seed)
    return train.subset(train_rows), train.subset(held_out_rows)


class AudioCaptionDataset(torch.utils.data.Dataset):
    """Item i: {"wave": one window of mono 16 kHz audio, "caption_id": int, "caption": str}, or None if unreadable.

    `caption_ids` index `vocabulary` (the unique captions of the whole run), so the loss can tell two
    items with the same caption apart from a true negative. `crop="random"` draws each crop from
    (seed, epoch, index): reproducible, and different every epoch (call `set_epoch`).
    """

    def __init__(self, pairs: AudioCaptionPairs, vocabulary: dict[str, int], window_samples: int, crop: str = "random",
                 seed: int = 0, max_seconds: float | None = DEFAULT_MAX_SECONDS):
        missing = [c for c in dict.fromkeys(pairs.captions) if c not in vocabulary]
        if missing:
            raise ValueError(f"{len(missing)} captions are not in the vocabulary, e.g. {missing[0]!r}")
        self.pairs, self.vocabulary, self.window_samples = pairs, vocabulary, window_samples
        self.crop, self.seed, self.max_seconds, self.epoch = crop, seed, max_seconds, 0

    @property
    def captions(self) -> list[str]:
        return self.pairs.captions

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def read(self, index: int) -> np.ndarray:
        """The whole sound of item `index`, mono 16 kHz; raises AudioError if it cannot be used."""
        return load_audio(self.pairs.sources[index], max_seconds=self.max_seconds)

    def __getitem__(self, index: int) -> dict | None:
        try:
            wave = self.read(index)
        except (AudioError, OSError) as error:
            # None, not an exception: an exception would kill the DataLoader worker and the run with it
            logger.warning("skipping item %d of %s: %s", index, self.pairs.name or "the data", error)
            return None
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.crop == "random" else None
        caption = self.pairs.captions[index]
        return {"wave": fit_to_window(wave, self.window_samples, self.crop, rng), "caption_id": self.vocabulary[caption], "caption": caption,
                "augment_seed": item_seed(rng)}


class AudioCaptionCollator:
    """Items → a batch of input features; unreadable (None) items are dropped and counted in `skipped`.

    With `fill_to`, the batch is topped back up by repeating its readable items: under several
    processes the contrastive loss gathers equal-sized batches from all of them, so a batch must not
    shrink. A repeat shares its caption id, so the loss treats it as a positive, never as a negative.
    A batch with no readable item is empty (`empty_batch`). Items from a stream (align.streaming) may be
    unreadable too (their "wave" is None); the batch then also carries the stream's position after its last
    item (`stream_state`, for resuming) and the keys of its readable items (`keys`). With an active `augment`
    (training), each item with an `augment_seed` has its features warped and masked (align.augment).

    Without a `feature_extractor` the batch carries the sound instead of features: `waves` (B, N) float32,
    zero-padded, `lengths` (B,) and `augment_seeds`, so that the training loop computes the features on its
    own device, a GPU when there is one (`features_on_device`; align.train --features-on device).
    """

    def __init__(self, feature_extractor=None, fill_to: int | None = None, augment: FeatureAugment | None = None):
        self.feature_extractor, self.fill_to = feature_extractor, fill_to
        self.augment = augment if augment is not None and augment.active else None

    def __call__(self, items: list[dict | None]) -> dict:
        good = [item for item in items if item is not None and item.get("wave") is not None]
        skipped = len(items) - len(good)
        extra = {}
        if items and isinstance(items[-1], dict) and "stream_state" in items[-1]:  # a stream's position after this batch
            extra["stream_state"] = items[-1]["stream_state"]
            extra["keys"] = [item["key"] for item in good]  # each item once, before any fill
        if not good:
            sound = {"input_features": None, "attention_mask": None} if self.feature_extractor is not None else {"waves": None, "lengths": None}
            return {**sound, "caption_ids": torch.zeros(0, dtype=torch.long), "captions": [], "skipped": skipped, **extra}
        if self.fill_to:
            good = [good[i % len(good)] for i in range(max(self.fill_to, len(good)))]
        waves = [item["wave"] for item in good]
        seeds = [item.get("augment_seed") for item in good]
        seeds = seeds if self.augment is not None and all(seed is not None for seed in seeds) else None
        if self.feature_extractor is None:
            padded, sizes = pad_waves(waves)
            sound = {"waves": torch.from_numpy(padded), "lengths": torch.tensor(sizes, dtype=torch.long), "augment_seeds": seeds}
        elif seeds is not None:
            sound = self.augment.features(self.feature_extractor, waves, seeds, SAMPLE_RATE)
        else:
            features = self.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
            sound = {"input_features": features["input_features"], "attention_mask": features["attention_mask"]}
        return {
            **sound,
            "caption_ids": torch.tensor([item["caption_id"] for item in good], dtype=torch.long),
            "captions": [item["caption"] for item in good],
            "skipped": skipped,
            **extra,
        }


def empty_batch(batch: dict) -> bool:
    """A batch of AudioCaptionCollator with no readable clip (features or sound alike)."""
    return batch.get("input_features") is None and batch.get("waves") is None


def features_on_device(batch: dict, extractor, augment: FeatureAugment | None = None) -> dict:
    """A sound batch's (`AudioCaptionCollator` without extractor) input features and attention mask, computed
    by `extractor` (an hearing.features.BatchedFeatureExtractor) where the waves are: the training device.
    The same features, augmentation included, as the collator computes from the same items."""
    seeds = batch.get("augment_seeds")
    if augment is not None and augment.active and seeds is not None:
        return augment.features(extractor, batch["waves"], seeds, SAMPLE_RATE, lengths=batch["lengths"])
    features = extractor(batch["waves"], lengths=batch["lengths"], sampling_rate=SAMPLE_RATE)
    return {"input_features": features["input_features"], "attention_mask": features["attention_mask"]}


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation drawn from (seed, epoch): every process draws the same order, and a resumed run the
    same order as the run it continues, so skipping the batches already seen puts it where it stopped."""

    def __init__(self, length: int, seed: int = 0):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


def caption_vocabulary(*pair_sets: AudioCaptionPairs) -> dict[str, int]:
    """Unique captions over all pair sets → caption id, in first-seen order."""
    return {caption: i for i, caption in enumerate(dict.fromkeys(c for pairs in pair_sets for c in pairs.captions))}
