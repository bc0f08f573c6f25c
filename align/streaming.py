"""Audio-caption pairs that stream: WebDataset tar shards and `datasets` Hub datasets in streaming mode.

For corpora larger than a disk (AudioCaps, WavCaps, LAION-Audio-630K): nothing is downloaded ahead, audio is
decoded by `hearing.audio.load_audio` as it arrives (never by torchcodec), and the pipeline is

    shards (local paths or URLs, brace patterns: shard-{000000..000127}.tar)
      → `datasets` streaming reader ("webdataset" builder, or a Hub dataset with streaming=True)
      → shard order shuffled per epoch, split across processes (`datasets.distributed.split_dataset_by_node`)
        and across DataLoader workers (by `datasets` itself, shard by shard: no item is read twice)
      → a seeded shuffle buffer of `buffer_size` items (raw bytes, decoded only when drawn)
      → decode, crop to the encoder's window: {"wave", "caption", "caption_id", "key", "stream_state"}

A shard member pair is `key.wav` (or .flac, .mp3, .ogg, ...) + `key.txt` (the caption) or `key.json` (with a
caption/text or labels field). An undecodable, empty or over-long member, or one without caption, is skipped
and counted (it is yielded as an item whose "wave" is None, which the collator drops and counts).

Resuming exactly. `datasets`' own `IterableDataset.state_dict()` restores the reader's position but not a
shuffle buffer's content (what sat in the buffer would be lost). So each yielded item carries its stream's
state: the reader's `state_dict()` taken just before the oldest item still in the buffer, which items of the
reader since then are still in the buffer, and the RNG state. Restoring re-reads that stretch (bytes only,
nothing decoded) to rebuild the buffer exactly, and the stream continues with the item after the last one
consumed: every good item exactly once per epoch, across a kill. A state is per (process, DataLoader worker),
so a run resumes with the same number of processes and `--num-workers`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import zlib
from collections.abc import Sequence

from braceexpand import braceexpand

import numpy as np
import torch

from hearing.audio import DEFAULT_MAX_SECONDS, AudioError, fit_to_window, load_audio
from align.augment import item_seed
from align.data import (
    CAPTION_COLUMNS,
    DEFAULT_CAPTION_TEMPLATE,
    LABEL_COLUMNS,
    AudioCaptionPairs,
    captions_for_row,
    empty_batch,
)

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus", "oga", "aiff", "aif", "au", "m4a", "webm")
STATE_VERSION = 1


def shard_list(patterns: str | Sequence[str]) -> list[str]:
    """Every shard named by `patterns` (paths or URLs, with brace patterns; several separated by spaces), in order."""
    from pathlib import Path

    if isinstance(patterns, str):
        patterns = [patterns]
    shards = [s for p in patterns for part in p.split() for s in braceexpand(part)]  # WebDataset's own brace expansion
    if not shards:
        raise ValueError("no shards given: name tar shards, e.g. --shards 'data/shard-{000000..000127}.tar'")
    local_missing = [s for s in shards if "://" not in s and not Path(s).exists()]
    if local_missing:
        raise FileNotFoundError(f"{len(local_missing)} of {len(shards)} shards do not exist, e.g. {local_missing[0]}")
    return shards


def open_webdataset(shards: Sequence[str]):
    """A `datasets` streaming reader over WebDataset tar shards, audio members as raw bytes (no torchcodec)."""
    from datasets import Audio, Features, Value, load_dataset

    files = {"train": list(shards)}
    probe = load_dataset("webdataset", data_files=files, split="train", streaming=True)  # columns from the first samples
    # `datasets` would encode Audio members through torchcodec: keep them as bytes, load_audio decodes them
    features = Features({name: Value("binary") if isinstance(feature, Audio) else feature for name, feature in probe.features.items()})
    return load_dataset("webdataset", data_files=files, split="train", streaming=True, features=features)


def open_hub_stream(dataset: str, config: str | None = None, split: str = "train", audio_column: str = "audio"):
    """A `datasets` Hub dataset (or a local data folder) read with streaming=True, audio left undecoded."""
    from datasets import Audio, load_dataset

    stream = load_dataset(dataset, config, split=split, streaming=True)
    features = stream.features or {}
    if isinstance(features.get(audio_column), Audio):
        stream = stream.cast_column(audio_column, Audio(decode=False))
    return stream


def caption_id(caption: str) -> int:
    """A caption's id, the same in every process and run without a shared vocabulary: 63 bits of its hash."""
    return int.from_bytes(hashlib.blake2b(caption.encode("utf-8"), digest_size=8).digest(), "little") & (2**63 - 1)


class _QuietBufferWarning(logging.Filter):
    """`datasets` warns that a loaded state lacks its shuffle buffer's content: here the buffer is rebuilt exactly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "shuffle buffer" not in record.getMessage()


logging.getLogger("datasets.iterable_dataset").addFilter(_QuietBufferWarning())


class StreamingAudioCaptions(torch.utils.data.IterableDataset):
    """Items {"wave", "caption", "caption_id", "key", "stream_state"} from a `datasets` streaming reader.

    Each (process `rank` of `world_size`, DataLoader worker) reads its own part: whole shards (`IterableDataset.shard`)
    when there are at least as many shards as parts, else every n-th item (`split_dataset_by_node`).
    Call `set_epoch` before each epoch (new shard order, buffer draws and crops) and, to resume, `load_state_dict`
    with the states of the last batches consumed (`{worker id: batch["stream_state"]}`).
    """

    def __init__(self, source, window_samples: int, *, seed: int = 0, buffer_size: int = 1000, rank: int = 0, world_size: int = 1,
                 audio_column: str | None = None, caption_column: str | None = None, label_column: str | None = None,
                 template: str = DEFAULT_CAPTION_TEMPLATE, max_seconds: float | None = DEFAULT_MAX_SECONDS, crop: str = "random"):
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.source = source
        self.window_samples, self.seed, self.buffer_size, self.rank, self.world_size = window_samples, seed, buffer_size, rank, world_size
        self.caption_columns = [c.strip() for c in caption_column.split(",") if c.strip()] if caption_column else []
        self.label_columns = [c.strip() for c in label_column.split(",") if c.strip()] if label_column else []
        self.audio_column, self.template, self.max_seconds, self.crop = audio_column, template, max_seconds, crop
        self.epoch, self.resume_states = 0, {}

    @property
    def n_shards(self) -> int:
        return self.source.n_shards

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.resume_states = {}
        self.epoch = epoch

    def load_state_dict(self, states: dict) -> None:
        """States (worker id → a batch's "stream_state") of where each worker's stream stopped; sets the epoch."""
        states = {int(w): s for w, s in states.items() if s is not None}
        for state in states.values():
            if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
                raise ValueError(f"the stream state was saved by process {state['rank']} of {state['world_size']}; this is process "
                                 f"{self.rank} of {self.world_size}: resume a streaming run with the same number of processes")
        if states:
            self.epoch = next(iter(states.values()))["epoch"]
        self.resume_states = states

    # -- one row → (audio, caption) pairs ---------------------------------------------------------------------------
    def _audio(self, row: dict):
        if self.audio_column:
            return row.get(self.audio_column)
        for name in ("audio", *AUDIO_EXTENSIONS):
            if row.get(name) is not None:
                return row[name]
        return None

    def _captions(self, row: dict) -> list[str]:
        fields = dict(row)
        if isinstance(row.get("json"), dict):  # a WebDataset key.json: its fields count as columns
            fields.update(row["json"])
        if not self.caption_columns and not self.label_columns and row.get("txt"):  # a WebDataset key.txt is the caption
            fields.setdefault("caption", row["txt"])
        columns = self.caption_columns or ([] if self.label_columns else [next((c for c in CAPTION_COLUMNS if fields.get(c)), None)])
        columns = [c for c in columns if c]
        labels = self.label_columns or [next((c for c in LABEL_COLUMNS if fields.get(c) is not None), "labels")]
        return captions_for_row(fields, columns, [] if columns else labels, self.template, {})  # the rule local data follows

    def _entries(self, n: int, row: dict, part: int = 0) -> list[tuple]:
        """The buffer entries of reader item n: (n, j, audio, caption, key), one per caption; one with caption None if it has none.
        The key is the WebDataset sample's, else "<part>/<n>" (item n of this process's and worker's part of the stream)."""
        key = str(row["__key__"]) if row.get("__key__") else f"{part}/{n}"
        audio = self._audio(row)
        captions = self._captions(row) if audio is not None else []
        return [(n, j, audio, caption, key) for j, caption in enumerate(captions)] or [(n, 0, None, None, key)]

    def _part(self, index: int, count: int):
        """Stream `index` of `count` (processes x workers): whole shards when there are enough, else every count-th item."""
        from datasets.distributed import split_dataset_by_node

        source = self.source
        if count > 1 and source.n_shards >= count:
            source = source.shard(num_shards=count, index=index, contiguous=False)
        elif count > 1:
            if index == 0:
                logger.warning("%d shards for %d streams (processes x DataLoader workers): every stream reads every shard and keeps "
                               "one item in %d. Write at least %d shards, or lower --num-workers.", source.n_shards, count, count, count)
            source = split_dataset_by_node(source, rank=index, world_size=count)
        # shard order shuffled per epoch (set_epoch); items are shuffled by our buffer. `.iter()` rather than `iter()`:
        # inside a DataLoader worker `datasets` would split the shards again, and restore states into the wrong layout
        return source.shuffle(seed=self.seed, buffer_size=1)

    # -- the stream -------------------------------------------------------------------------------------------------
    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        part = self.rank * num_workers + worker
        source = self._part(part, self.world_size * num_workers)
        source.set_epoch(self.epoch)
        rng = np.random.default_rng((self.seed, self.epoch, self.rank, worker, 7919))
        resume = self.resume_states.get(worker)
        buffer: list[tuple] = []
        before: dict[int, dict] = {}  # reader item n → the reader's state just before it, for items still in the buffer
        in_buffer: dict[int, int] = {}  # n → how many of its entries are in the buffer
        n, yielded, skipped = 0, 0, 0
        position = None  # the reader's state after its last item read (None: the epoch's start)
        if resume is not None:
            if resume.get("version") != STATE_VERSION or resume["num_workers"] != num_workers:
                raise ValueError(f"the stream state was saved with {resume['num_workers']} DataLoader workers, this run has {num_workers}: "
                                 "resume with the same --num-workers")
            if resume["anchor"] is not None:
                source.load_state_dict(resume["anchor"])
            position = resume["anchor"]
            n, yielded, skipped = resume["anchor_n"], resume["yielded"], resume["skipped"]
            rng.bit_generator.state = resume["rng"]
        reader = ({name: values[0] for name, values in batch.items()} for batch in source.iter(batch_size=1))

        def read() -> bool:
            nonlocal n, position
            try:
                row = next(reader)
            except StopIteration:
                return False
            entries = self._entries(n, row, part)
            before[n], in_buffer[n] = position, len(entries)
            position = source.state_dict()
            buffer.extend(entries)
            n += 1
            return True

        if resume is not None:  # rebuild the buffer exactly: re-read from the oldest buffered item, keep what was in it
            wanted = [tuple(e) for e in resume["buffer"]]
            keep = set(wanted)
            while n < resume["next"]:
                if not read():
                    raise RuntimeError("the stream ended before the saved position: the shards changed since the checkpoint")
            found = {(e[0], e[1]): e for e in buffer if (e[0], e[1]) in keep}
            if len(found) != len(keep):
                raise RuntimeError("the shuffle buffer could not be rebuilt from the shards: they changed since the checkpoint")
            buffer = [found[k] for k in wanted]
            in_buffer = {}
            for e in buffer:
                in_buffer[e[0]] = in_buffer.get(e[0], 0) + 1
            before = {k: v for k, v in before.items() if k in in_buffer}

        def state() -> dict:
            oldest = next(iter(before), None)
            return {
                "version": STATE_VERSION, "epoch": self.epoch, "rank": self.rank, "world_size": self.world_size, "worker": worker,
                "num_workers": num_workers, "anchor": before[oldest] if oldest is not None else position,
                "anchor_n": oldest if oldest is not None else n, "next": n, "buffer": [(e[0], e[1]) for e in buffer],
                "rng": rng.bit_generator.state, "yielded": yielded, "skipped": skipped,
            }

        exhausted = False
        while True:
            while not exhausted and len(buffer) < self.buffer_size:  # fill; one draw per read once full
                exhausted = not read()
            if not buffer:
                return
            entry = buffer.pop(int(rng.integers(len(buffer))))
            in_buffer[entry[0]] -= 1
            if in_buffer[entry[0]] == 0:
                del in_buffer[entry[0]], before[entry[0]]
            item = self._decode(entry)
            if item["wave"] is None:
                skipped += 1
            else:
                yielded += 1
            item["stream_state"] = state()
            yield item

    def _decode(self, entry: tuple) -> dict:
        _, j, audio, caption, key = entry
        item = {"wave": None, "caption": caption, "caption_id": caption_id(caption) if caption else -1, "key": f"{key}#{j}" if j else key}
        if audio is None or caption is None:
            logger.warning("skipping stream item %s: %s", key, "no audio member" if audio is None else "no caption or labels")
            return item
        try:
            wave = load_audio(audio, max_seconds=self.max_seconds)
        except (AudioError, OSError) as error:
            logger.warning("skipping stream item %s: %s", key, error)
            return item
        rng = np.random.default_rng((self.seed, self.epoch, zlib.crc32(item["key"].encode()))) if self.crop == "random" else None
        item["wave"] = fit_to_window(wave, self.window_samples, self.crop, rng)
        item["augment_seed"] = item_seed(rng)
        return item


def _row_reader(audio_column: str | None, caption_column: str | None, label_column: str | None, template: str) -> StreamingAudioCaptions:
    """A reader of stream rows alone (its `_entries`), for code that reads a stream in order rather than training on it."""
    reader = StreamingAudioCaptions.__new__(StreamingAudioCaptions)
    reader.caption_columns = [c.strip() for c in caption_column.split(",") if c.strip()] if caption_column else []
    reader.label_columns = [c.strip() for c in label_column.split(",") if c.strip()] if label_column else []
    reader.audio_column, reader.template = audio_column, template
    return reader


def take_pairs(source, count: int, *, audio_column: str | None = None, caption_column: str | None = None,
               label_column: str | None = None, template: str = DEFAULT_CAPTION_TEMPLATE, name: str = "stream") -> AudioCaptionPairs:
    """The first `count` pairs of a stream held in memory (audio bytes undecoded): a held-out set for evaluation."""
    reader = _row_reader(audio_column, caption_column, label_column, template)
    sources, captions, dropped = [], [], 0
    for number, row in enumerate(source if not count else itertools.islice(source, count)):
        entries = [e for e in reader._entries(number, row) if e[3] is not None]
        dropped += not entries
        for entry in entries:
            sources.append(entry[2])
            captions.append(entry[3])
    return AudioCaptionPairs(sources, captions, name, dropped)


def stream_clips(source, *, audio_column: str | None = None, caption_column: str | None = None, label_column: str | None = None,
                 template: str = DEFAULT_CAPTION_TEMPLATE):
    """(key, raw audio or None, first caption or None) for each row of a stream, in the stream's order, nothing decoded:
    each clip once, as evaluation wants it (a clip without caption is still a clip; one without audio is reported)."""
    reader = _row_reader(audio_column, caption_column, label_column, template)
    for number, row in enumerate(source):
        audio = reader._audio(row)
        captions = reader._captions(row) if audio is not None else []
        yield str(row["__key__"]) if row.get("__key__") else str(number), audio, captions[0] if captions else None


def write_shards(members: Sequence[tuple[str, bytes, str, str | dict]], out_dir, samples_per_shard: int = 1000, prefix: str = "shard") -> list[str]:
    """Write (key, audio bytes, audio extension, caption or json dict) samples as WebDataset tar shards
    `<out_dir>/<prefix>-000000.tar`, ...; returns their paths. Keys must be unique and contain no dot.

    With the standard library's tarfile: webdataset 1.0.2's ShardWriter writes the same members, byte for byte, but
    measured here 1.5x slower (1.19-1.40 s against 0.78-0.96 s for 4000 samples, 128 MB) and 6 % larger files."""
    import io
    import json
    import tarfile
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, len(members), samples_per_shard)):
        path = out / f"{prefix}-{number:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for key, audio, extension, caption in members[start : start + samples_per_shard]:
                text = (json.dumps(caption), "json") if isinstance(caption, dict) else (caption, "txt")
                for name, payload in ((f"{key}.{extension}", audio), (f"{key}.{text[1]}", text[0].encode("utf-8"))):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> list[str]:
    """Pack a local audiofolder split into WebDataset tar shards (a key.<ext> + key.txt pair per caption)."""
    import argparse
    from pathlib import Path

    from align.data import pairs_from_folder

    parser = argparse.ArgumentParser(prog="python -m align.streaming", description=main.__doc__)
    parser.add_argument("--data-dir", required=True, help="an audiofolder split: audio files + metadata.jsonl/csv")
    parser.add_argument("--out", required=True, help="folder for the shards")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--caption-column")
    parser.add_argument("--label-column")
    args = parser.parse_args(argv)
    pairs = pairs_from_folder(args.data_dir, caption_column=args.caption_column, label_column=args.label_column)
    members = [(f"{i:09d}", Path(source).read_bytes(), Path(source).suffix.lstrip(".").lower(), caption)
               for i, (source, caption) in enumerate(zip(pairs.sources, pairs.captions))]
    paths = write_shards(members, args.out, args.samples_per_shard)
    pattern = Path(args.out) / f"shard-{{000000..{len(paths) - 1:06d}}}.tar"
    print(f"{len(members)} samples in {len(paths)} shards: --shards '{pattern}'")
    return paths


def lockstep(batches, accelerator, spare_batch=None):
    """A stream's batches, with every process stepping together: a process whose part of the stream ended
    before the others' repeats its last batch (marked "padding", not counted as seen) until all have ended,
    as accelerate's even_batches does, since the loss gathers equal batches from every process. A process that
    has no last batch (its part ended exactly at the checkpoint it resumed from) pads with `spare_batch()`."""
    iterator, last = iter(batches), None
    while True:
        batch = next(iterator, None)
        if accelerator.num_processes > 1:
            ended = int(accelerator.reduce(torch.tensor([int(batch is None)], device=accelerator.device), "sum").item())
            if ended == accelerator.num_processes:
                return
            if batch is None:
                if last is None and spare_batch is not None:
                    last = spare_batch()
                if last is None:
                    raise RuntimeError(f"process {accelerator.process_index} got no readable data this epoch while others did: "
                                       "the stream has too few items (or shards) for this many processes")
                batch = {**last, "skipped": 0, "keys": [], "padding": True}
        elif batch is None:
            return
        if not empty_batch(batch):
            last = batch
        yield batch


if __name__ == "__main__":
    main()
