"""Streaming data: WebDataset tar shards read through `datasets`, shuffled in a buffer, split over processes and
DataLoader workers without overlap, resumed exactly, and a real streaming run of align.train killed and resumed."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from align.data import AudioCaptionCollator, pairs_from_folder
from align.streaming import (
    StreamingAudioCaptions,
    caption_id,
    open_webdataset,
    shard_list,
    take_pairs,
)
from tests.conftest import kill_after_checkpoint, pack, read_log, subprocess_env

REPO = Path(__file__).resolve().parents[1]
WINDOW = 8000


class CountingFeatures:
    """Stands in for the feature extractor where only the data flow is tested."""

    def __call__(self, waves, **kwargs):
        return {"input_features": torch.zeros(len(waves), 4, 2), "attention_mask": torch.ones(len(waves), 4, dtype=torch.long)}


@pytest.fixture(scope="module")
def shards(synthetic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    paths, good = pack(synthetic_data, out)
    return out, paths, good


def consume(source, rank, world_size, num_workers, epoch=0, stop_after=None, states=None, buffer_size=5):
    """(keys used, {worker: state} of the batches used, members skipped) of one process's loader, stopped after `stop_after` batches."""
    dataset = StreamingAudioCaptions(source, WINDOW, seed=3, buffer_size=buffer_size, rank=rank, world_size=world_size)
    if states:
        dataset.load_state_dict(json.loads(json.dumps(states)))  # as a checkpoint stores it
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=num_workers, collate_fn=AudioCaptionCollator(CountingFeatures(), fill_to=3))
    keys, positions, skipped = [], dict(states or {}), 0
    for number, batch in enumerate(loader):
        if number == stop_after:
            break
        keys += batch["keys"]
        skipped += batch["skipped"]
        positions[str(batch["stream_state"]["worker"])] = batch["stream_state"]
    return keys, positions, skipped


def test_brace_patterns_expand_like_webdataset(tmp_path):
    assert shard_list("s3://b/shard-{000008..000010}.tar") == [f"s3://b/shard-0000{i:02d}.tar" for i in (8, 9, 10)]
    assert shard_list("s3://{train,valid}-{0..1}.tar") == ["s3://train-0.tar", "s3://train-1.tar", "s3://valid-0.tar", "s3://valid-1.tar"]
    assert shard_list("https://host/a-{0..1}.tar https://host/b.tar") == ["https://host/a-0.tar", "https://host/a-1.tar", "https://host/b.tar"]
    with pytest.raises(FileNotFoundError, match="1 of 2 shards do not exist"):
        (tmp_path / "x-0.tar").write_bytes(b"")
        shard_list(str(tmp_path / "x-{0..1}.tar"))


@pytest.mark.parametrize("num_workers,num_shards", [(0, 7), (2, 7), (2, 3)])  # 3 shards < 2 processes x 2 workers: split by item
def test_two_processes_see_every_good_sample_once_per_epoch_across_a_resume(shards, num_workers, num_shards):
    _, paths, good = shards
    source = open_webdataset(shard_list(paths[:num_shards]))
    good = {k for k in good if int(k.split("-")[1]) < num_shards * 4 - 1} if num_shards < len(paths) else good
    epoch_orders = []
    for epoch in (0, 1):
        whole, resumed, skipped = [], [], 0
        for rank in (0, 1):
            keys, _, bad = consume(source, rank, 2, num_workers, epoch)
            whole += keys
            skipped += bad
            # killed after 2 batches, resumed from their states: the rest of the stream, nothing again, nothing lost
            first, states, _ = consume(source, rank, 2, num_workers, epoch, stop_after=2)
            rest, _, _ = consume(source, rank, 2, num_workers, epoch, states=states)
            resumed += first + rest
            assert not set(first) & set(rest)
        assert Counter(whole) == Counter(good) == Counter(resumed)  # every good sample once, over both processes
        assert skipped == 1
        epoch_orders.append(whole)
    assert epoch_orders[0] != epoch_orders[1]  # a new shuffle each epoch


def test_resuming_at_every_batch_gives_the_same_stream(shards):
    """The shuffle buffer is rebuilt exactly: a resumed stream continues with the very items the unbroken one yields."""
    _, paths, _ = shards
    source = open_webdataset(shard_list(paths))
    unbroken, _, _ = consume(source, 0, 1, 0, buffer_size=8)
    for stop in range(1, 9):
        first, states, _ = consume(source, 0, 1, 0, stop_after=stop, buffer_size=8)
        rest, _, _ = consume(source, 0, 1, 0, states=states, buffer_size=8)
        assert first + rest == unbroken


def test_captions_from_txt_or_json_and_held_out_pairs(shards, synthetic_data, tmp_path):
    _, paths, _ = shards
    from_txt = take_pairs(open_webdataset(shard_list(paths[:2])), 0)
    json_paths, _ = pack(synthetic_data, tmp_path / "json", as_json=True)
    from_json = take_pairs(open_webdataset(shard_list(json_paths[:2])), 0)
    truth = pairs_from_folder(Path(synthetic_data) / "train").captions
    assert from_txt.captions == from_json.captions == truth[:5] + ["a broken recording"] + truth[5:7]
    assert isinstance(from_txt.sources[0], bytes) and len(from_txt) == 8
    assert caption_id("a dog barking") == caption_id("a dog barking") != caption_id("a dog barks")


def launch(args):
    return [sys.executable, "-m", "align.train", *args]


def stream_args(out, models, shard_paths, *extra):
    pattern = str(Path(shard_paths[0]).parent / f"shard-{{000000..{len(shard_paths) - 1:06d}}}.tar")  # a brace pattern
    return [
        "--shards", pattern, "--audio-model", str(models / "audio_short"), "--text-encoder", str(models / "text_encoder"),
        "--tokenizer", str(models / "tokenizer"), "--output-dir", str(out), "--target-cache-dir", str(out.parent / "targets"),
        "--train-batch-size", "4", "--eval-batch-size", "8", "--num-workers", "0", "--lr-warmup-steps", "1", "--learning-rate", "1e-3",
        "--shuffle-buffer", "6", "--record-samples", "--eval-steps", "0", "--logging-steps", "1", *extra,
    ]


def used_keys(out: Path, rank: int = 0) -> dict[int, list[str]]:
    by_epoch: dict[int, list[str]] = {}
    for line in (out / f"samples-rank{rank}.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_epoch.setdefault(record["epoch"], []).extend(record["keys"])
    return by_epoch


def test_a_killed_streaming_run_resumes_after_its_last_checkpoint(tmp_path, shards, saved_models):
    _, paths, good = shards
    out = tmp_path / "run"
    eval_paths = paths[:1]  # 4 pairs (held-out data in a real run)
    command = launch(stream_args(out, saved_models, paths, "--max-train-steps", "9", "--checkpointing-steps", "2", "--eval-shards", *eval_paths,
                                 "--max-eval-items", "4"))
    kill_after_checkpoint(command, out, 4, tmp_path / "first.txt")
    killed = {r["step"]: r for r in read_log(out)}
    last_checkpoint = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists())
    assert 4 <= last_checkpoint < max(killed)
    assert (out / "checkpoints" / f"checkpoint-{last_checkpoint}" / "stream_state-0.json").exists()

    resumed = subprocess.run(command + ["--resume-from-checkpoint", "latest"], check=False, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed from checkpoint-{last_checkpoint}" in resumed.stderr + resumed.stdout
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 10))
    for step in range(last_checkpoint + 1, max(killed) + 1):  # the same samples, weights and negatives after the checkpoint: same losses
        assert log[step - 1]["loss"] == pytest.approx(killed[step]["loss"], rel=1e-4)
    epochs = used_keys(out)
    assert Counter(epochs[0]) == Counter(good)  # the first epoch: every good sample exactly once, across the kill
    assert len(epochs[1]) == len(set(epochs[1])) and set(epochs[1]) <= good
    assert log[-1]["skipped_items"] >= 1  # the bad member, counted
    metrics = json.loads((out / "metrics.json").read_text())["history"]
    assert metrics[-1]["step"] == 9 and metrics[-1]["num_items"] == 4
    assert (out / "final" / "model.safetensors").exists()


def write_parquet_dataset(folder: Path, synthetic_data) -> Path:
    """A Hub-style dataset on disk: parquet files whose `audio` column holds {bytes, path}, typed Audio in the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Audio, Features, Value

    features = {"huggingface": json.dumps({"info": {"features": Features({"audio": Audio(), "caption": Value("string")}).to_dict()}})}
    for split in ("train", "test"):
        pairs = pairs_from_folder(Path(synthetic_data) / split)
        audio = pa.array([{"bytes": Path(s).read_bytes(), "path": Path(s).name} for s in pairs.sources],
                         type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        table = pa.table({"audio": audio, "caption": pairs.captions}).replace_schema_metadata(features)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def test_a_hub_style_dataset_streams_into_training(tmp_path, synthetic_data, saved_models):
    """--dataset ... --streaming: `datasets` streams the parquet files (as from the Hub), two DataLoader workers share them."""
    from align import train

    dataset = write_parquet_dataset(tmp_path / "dataset", synthetic_data)
    out = tmp_path / "run"
    args = stream_args(out, saved_models, ["unused"], "--max-train-steps", "3", "--num-workers", "2", "--checkpointing-steps", "0")
    args = ["--dataset", str(dataset), "--streaming"] + args[2:]
    result = train.main(args)
    assert result["global_step"] == 3 and result["metrics"]["num_items"] == 8  # held out: the test split's 8 clips
    keys = used_keys(out)[0]
    assert len(keys) == len(set(keys)) == 12 and {k.split("/")[0] for k in keys} == {"0", "1"}  # both workers, no repeats
