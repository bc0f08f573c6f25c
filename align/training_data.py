"""What align.train reads, one interface for every source: a local audiofolder, a Hub dataset, or a stream (tar shards,
or a Hub dataset read with streaming=True).

    data = TrainingData.open(args, accelerator)           # pairs (or a stream), held-out pairs, caption vocabulary
    targets = data.targets(cache, text_encoder, tokenizer) # every caption's CLIP states, in one interface
    data.make_loaders(window, collator, eval_collator)     # then data.prepare(model, optimizer) → max steps
    for batch in data.batches(epoch, batches_done): ...    # each process's batches of an epoch, resumable
    data.remember(batch); data.checkpoint_state(); data.resume(checkpoint)

Files and Hub datasets: every caption is known ahead, so its target is computed once into the TargetCache and the
text encoder is freed; the loader is accelerate's (each process its share of a seeded permutation) and a resume skips
the batches already used. A stream: captions come as it flows (targets computed as they arrive), each process and
DataLoader worker reads its own part (accelerate never sees the loader), every process steps together (lockstep),
and a resume restores each worker's exact stream position.
"""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import torch

from align.checkpoints import stream_state_file
from align.data import AudioCaptionDataset, AudioCaptionPairs, EpochShuffleSampler, caption_vocabulary, empty_batch, load_pairs
from align.streaming import StreamingAudioCaptions, lockstep, open_hub_stream, open_webdataset, shard_list, take_pairs
from align.targets import CaptionTargets, StreamTargets, TargetCache

logger = logging.getLogger("align.train")


def open_streams(args):
    """(the training stream, held-out pairs): tar shards or a Hub dataset read with streaming=True; the held-out pairs
    are the first --max-eval-items of --eval-shards or of the Hub dataset's eval split, held in memory."""
    columns = {"audio_column": args.audio_column, "caption_column": args.caption_column, "label_column": args.label_column, "template": args.caption_template}
    eval_pairs = None
    if args.shards:
        source = open_webdataset(shard_list(args.shards))
        if args.eval_shards:
            eval_pairs = take_pairs(open_webdataset(shard_list(args.eval_shards)), args.max_eval_items, name="--eval-shards", **columns)
    else:
        source = open_hub_stream(args.dataset, args.dataset_config, args.split, args.audio_column or "audio")
        for name in [args.eval_split] if args.eval_split else ["test", "validation"]:
            try:
                held_out = open_hub_stream(args.dataset, args.dataset_config, name, args.audio_column or "audio")
            except ValueError as error:  # datasets raises ValueError for an unknown split
                if args.eval_split or "split" not in str(error).lower():
                    raise
                continue
            eval_pairs = take_pairs(held_out, args.max_eval_items, name=f"{args.dataset}[{name}]", **columns)
            break
    if not eval_pairs:
        logger.warning("streaming without held-out data: no evaluation (give --eval-shards, or a Hub dataset with a test/validation split)")
        eval_pairs = AudioCaptionPairs([], [], "none")
    return source, eval_pairs


class TrainingData:
    """The training and held-out data of one run (see the module doc)."""

    def __init__(self, args, accelerator, train_pairs, train_source, eval_pairs: AudioCaptionPairs, vocabulary: dict[str, int]):
        self.args, self.accelerator, self.streaming = args, accelerator, args.streaming
        self.train_pairs, self.train_source, self.eval_pairs, self.vocabulary = train_pairs, train_source, eval_pairs, vocabulary
        self.position: dict[int, dict] = {}  # a stream's DataLoader worker → the state after its last batch used
        self.samples_path = None  # --record-samples: the keys of every stream sample used (set by the caller)

    @classmethod
    def open(cls, args, accelerator) -> TrainingData:
        if args.streaming:  # read as training goes: held-out pairs are the eval stream's first ones
            source, eval_pairs = open_streams(args)
            data = cls(args, accelerator, None, source, eval_pairs, caption_vocabulary(eval_pairs))
            logger.info("streaming %d shards; %d held-out pairs, %d unique held-out captions", source.n_shards, len(eval_pairs), len(data.vocabulary))
            return data
        train_pairs, eval_pairs = load_pairs(
            args.data_dir, args.dataset, dataset_config=args.dataset_config, split=args.split, eval_split=args.eval_split,
            audio_column=args.audio_column, caption_column=args.caption_column, label_column=args.label_column,
            template=args.caption_template, eval_fraction=args.eval_fraction, seed=args.seed,
        )
        if args.max_eval_items and len(eval_pairs) > args.max_eval_items:
            eval_pairs = eval_pairs.subset(sorted(np.random.default_rng(args.seed).choice(len(eval_pairs), args.max_eval_items, replace=False)))
        vocabulary = caption_vocabulary(train_pairs, eval_pairs)  # caption → id; items with one id are positives of each other
        logger.info("%d training pairs, %d held-out pairs, %d unique captions", len(train_pairs), len(eval_pairs), len(vocabulary))
        return cls(args, accelerator, train_pairs, None, eval_pairs, vocabulary)

    def targets(self, cache: TargetCache, text_encoder, tokenizer, progress: bool = True):
        """Every known caption (all of them for files, the held-out ones for a stream) computed into the cache, which
        evaluation reads; and the training captions' targets: CaptionTargets over the cache (the text encoder may then
        be freed), or for a stream StreamTargets, which keep the text encoder for the captions still to come."""
        rows = torch.tensor(cache.ensure(list(self.vocabulary), progress=progress))  # caption id → cache row
        return StreamTargets(text_encoder, tokenizer) if self.streaming else CaptionTargets(cache, rows)

    def make_loaders(self, window: int, collator, eval_collator) -> None:
        args = self.args
        self.eval_set = AudioCaptionDataset(self.eval_pairs, self.vocabulary, window, "center", args.seed, args.max_audio_seconds)
        self.eval_loader = torch.utils.data.DataLoader(self.eval_set, batch_size=args.eval_batch_size, collate_fn=eval_collator, num_workers=args.num_workers)
        self.collator = collator
        seeded = torch.Generator().manual_seed(args.seed)  # worker seeds from here, not the global RNG a resume restores
        if self.streaming:
            self.train_set = StreamingAudioCaptions(
                self.train_source, window, seed=args.seed, buffer_size=args.shuffle_buffer, rank=self.accelerator.process_index,
                world_size=self.accelerator.num_processes, audio_column=args.audio_column, caption_column=args.caption_column,
                label_column=args.label_column, template=args.caption_template, max_seconds=args.max_audio_seconds,
            )
            self.train_loader = torch.utils.data.DataLoader(self.train_set, batch_size=args.train_batch_size, collate_fn=collator,
                                                            num_workers=args.num_workers, generator=seeded)
            return
        self.train_set = AudioCaptionDataset(self.train_pairs, self.vocabulary, window, "random", args.seed, args.max_audio_seconds)
        self.train_loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=args.train_batch_size, sampler=EpochShuffleSampler(len(self.train_set), args.seed), drop_last=True,
            collate_fn=collator, num_workers=args.num_workers, generator=seeded)
        if len(self.train_loader) == 0:
            raise ValueError(f"{len(self.train_set)} training pairs make no full batch of {args.train_batch_size}: lower --train-batch-size or add data")

    def prepare(self, model, optimizer):
        """(model, optimizer, optimizer steps to train) through accelerate; a stream's loader stays the data's own."""
        args = self.args
        if self.streaming:
            model, optimizer = self.accelerator.prepare(model, optimizer)
            return model, optimizer, args.max_train_steps
        model, optimizer, self.train_loader = self.accelerator.prepare(model, optimizer, self.train_loader)
        steps_per_epoch = -(-len(self.train_loader) // args.gradient_accumulation_steps)
        return model, optimizer, args.max_train_steps or args.num_epochs * steps_per_epoch

    def batches(self, epoch: int, batches_done: int):
        """This process's batches of `epoch`, from `batches_done` on (files) or from the stream's saved position."""
        self.train_set.set_epoch(epoch)  # new random crops each epoch (and, streaming, a new shard order and buffer draws)
        if self.streaming:
            return lockstep(self.train_loader, self.accelerator, lambda: self._spare_batch(epoch))
        loader = self.accelerator.skip_first_batches(self.train_loader, batches_done) if batches_done else self.train_loader
        loader.set_epoch(epoch)  # the sampler's permutation for this epoch, identical on every process and on resume
        return loader

    def _spare_batch(self, epoch: int):
        """A batch from the start of the next epoch's stream, to pad with (never recorded as seen)."""
        spare = copy.copy(self.train_set)
        spare.resume_states, spare.epoch = {}, epoch + 1
        for extra in torch.utils.data.DataLoader(spare, batch_size=self.args.train_batch_size, collate_fn=self.collator, num_workers=0):
            if not empty_batch(extra):
                return extra
        return None

    def on_device(self, batch: dict, device) -> dict:
        """A batch on the training device (accelerate moves the files' batches; a stream's are moved here)."""
        if not self.streaming:
            return batch
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def remember(self, batch: dict, step: int, epoch: int) -> None:
        """Where a stream stands after `batch` (and, with --record-samples, which samples step `step` used)."""
        if "stream_state" not in batch or batch.get("padding"):
            return
        self.position[batch["stream_state"]["worker"]] = batch["stream_state"]
        if self.samples_path is not None and batch["keys"]:
            with self.samples_path.open("a") as record:
                record.write(json.dumps({"step": step, "epoch": epoch, "keys": batch["keys"]}) + "\n")

    def end_epoch(self) -> None:
        self.position = {}

    def checkpoint_state(self) -> dict | None:
        """What a checkpoint stores of this process's data position: a stream's per-worker states (None for files)."""
        return {str(w): s for w, s in self.position.items()} if self.streaming else None

    def resume(self, checkpoint) -> None:
        """Restore a stream's position from `checkpoint` (files resume by skipping batches: see `batches`)."""
        if not self.streaming:
            return
        saved = stream_state_file(checkpoint, self.accelerator.process_index)
        if not saved.exists():
            raise ValueError(f"{checkpoint} holds no stream position for process {self.accelerator.process_index}: it was written by a run "
                             "with fewer processes, or without streaming. Resume with the same data and number of processes.")
        states = json.loads(saved.read_text())
        saved_workers = {s["num_workers"] for s in states.values()}
        if saved_workers and saved_workers != {max(1, self.args.num_workers)}:
            raise ValueError(f"{checkpoint} was written with --num-workers {saved_workers.pop()}; resume a streaming run with the same --num-workers")
        self.train_set.load_state_dict(states)
        self.position = dict(self.train_set.resume_states)
