import json

import numpy as np
import pytest
import soundfile as sf
import torch

from hearing.audio import SAMPLE_RATE, fit_to_window
from align.data import (
    AudioCaptionCollator,
    AudioCaptionDataset,
    EpochShuffleSampler,
    caption_vocabulary,
    labels_to_caption,
    load_pairs,
    pairs_from_folder,
    pairs_from_hub_dataset,
    seeded_split,
)
from tests.conftest import tone, write_folder

WINDOW = 8000  # half a second: the data code works for any window


@pytest.mark.parametrize(
    "labels, caption",
    [
        ("Rain,Thunder", "The sound of rain, thunder"),
        (["Dog", "Bark"], "The sound of dog, bark"),
        ("Male_speech_and_man_speaking", "The sound of male speech and man speaking"),
        (["Rain", "rain", " Thunder "], "The sound of rain, thunder"),
        ([["Church_bell"], "Bell,Chime"], "The sound of church bell, bell, chime"),
        ("", None),
        ([], None),
    ],
)
def test_labels_become_captions(labels, caption):
    assert labels_to_caption(labels) == caption


def test_class_indices_need_names():
    assert labels_to_caption([1, 0], names=["Dog", "Wind_chime"]) == "The sound of wind chime, dog"
    with pytest.raises(ValueError, match="class names"):
        labels_to_caption([1])


def test_folder_with_labels_gives_label_captions(tmp_path):
    rows = [{"file_name": "a.wav", "labels": "Rain,Thunder"}, {"file_name": "b.wav", "labels": "Dog"}, {"file_name": "c.wav", "labels": ""}]
    write_folder(tmp_path, rows, {"a.wav": (SAMPLE_RATE, tone(0.2, amplitude=0.5)), "b.wav": (SAMPLE_RATE, tone(0.2, amplitude=0.5))})
    pairs = pairs_from_folder(tmp_path)
    assert pairs.captions == ["The sound of rain, thunder", "The sound of dog"]
    assert pairs.sources == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    assert pairs.dropped_rows == 1  # the row with no labels


def test_csv_metadata_with_several_caption_columns(tmp_path):
    tmp_path.joinpath("metadata.csv").write_text("file_name,caption_1,caption_2\na.wav,rain on a roof,water dripping\n")
    sf.write(tmp_path / "a.wav", tone(0.2, amplitude=0.5), SAMPLE_RATE)
    pairs = pairs_from_folder(tmp_path, caption_column="caption_1,caption_2")
    assert pairs.captions == ["rain on a roof", "water dripping"]
    assert pairs.sources == [str(tmp_path / "a.wav")] * 2
    with pytest.raises(ValueError, match="not found"):
        pairs_from_folder(tmp_path, caption_column="caption")


def test_missing_caption_column_names_the_fix(tmp_path):
    write_folder(tmp_path, [{"file_name": "a.wav", "mood": "calm"}], {"a.wav": (SAMPLE_RATE, tone(0.2, amplitude=0.5))})
    with pytest.raises(ValueError, match="--caption-column"):
        pairs_from_folder(tmp_path)


def test_folder_test_split_is_the_held_out_data(synthetic_data):
    train, held_out = load_pairs(synthetic_data)
    assert len(train) == 24 and len(held_out) == 8
    assert all("/train/" in s for s in train.sources) and all("/test/" in s for s in held_out.sources)


def test_seeded_split_without_test_folder(synthetic_data):
    train, held_out = load_pairs(synthetic_data / "train", eval_fraction=0.25, seed=3)
    again_train, again_held_out = load_pairs(synthetic_data / "train", eval_fraction=0.25, seed=3)
    assert len(held_out) == 6 and len(train) == 18
    assert held_out.sources == again_held_out.sources and train.sources == again_train.sources
    assert not set(held_out.sources) & set(train.sources)
    other_train, _ = load_pairs(synthetic_data / "train", eval_fraction=0.25, seed=4)
    assert other_train.sources != train.sources
    assert seeded_split(2, 0.01, 0) in (([0], [1]), ([1], [0]))  # always something on both sides


def test_any_format_and_rate_becomes_mono_16k_in_the_window(tmp_path):
    rows = [{"file_name": "stereo44k.flac", "caption": "a"}, {"file_name": "short.wav", "caption": "b"}, {"file_name": "long.ogg", "caption": "c"}]
    long_wave = tone(2.0, rate=22050, amplitude=0.5)
    write_folder(tmp_path, rows, {"stereo44k.flac": (44100, tone(1.0, rate=44100, channels=2, amplitude=0.5)), "short.wav": (8000, tone(0.1, rate=8000, amplitude=0.5)), "long.ogg": (22050, long_wave)})
    pairs = pairs_from_folder(tmp_path)
    evaluation = AudioCaptionDataset(pairs, caption_vocabulary(pairs), WINDOW, crop="center")
    for i in range(3):
        item = evaluation[i]
        assert item["wave"].shape == (WINDOW,) and item["wave"].dtype == np.float32
    short = evaluation.read(1)
    assert len(short) == 1600  # 0.1 s at 16 kHz, repeated to fill the window
    np.testing.assert_allclose(evaluation[1]["wave"], fit_to_window(short, WINDOW))
    np.testing.assert_allclose(evaluation[2]["wave"], fit_to_window(evaluation.read(2), WINDOW, "center"))

    training = AudioCaptionDataset(pairs, caption_vocabulary(pairs), WINDOW, crop="random", seed=0)
    crop_epoch0 = training[2]["wave"]
    np.testing.assert_array_equal(crop_epoch0, training[2]["wave"])  # reproducible
    training.set_epoch(1)
    assert not np.array_equal(crop_epoch0, training[2]["wave"])  # a new crop each epoch


def test_bad_files_are_skipped_and_counted_without_killing_a_worker(tmp_path, feature_extractor, caplog):
    files = {
        "good1.wav": (SAMPLE_RATE, tone(0.3, amplitude=0.5)),
        "good2.wav": (SAMPLE_RATE, tone(0.3, 880, amplitude=0.5)),
        "corrupt.wav": b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(256)) * 4,
        "empty.wav": b"",
        "notes.wav": b"these are my notes, not a sound\n" * 20,
    }
    rows = [{"file_name": name, "caption": f"caption {i % 2}"} for i, name in enumerate([*files, "missing.wav"])]
    pairs = pairs_from_folder(write_folder(tmp_path, rows, files))
    dataset = AudioCaptionDataset(pairs, caption_vocabulary(pairs), WINDOW, crop="random")
    bad = [i for i in range(len(dataset)) if dataset[i] is None]
    assert bad == [2, 3, 4, 5]
    assert "corrupt.wav" in caplog.text and "notes.wav" in caplog.text and "empty" in caplog.text

    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1, collate_fn=AudioCaptionCollator(feature_extractor))
    batches = list(loader)  # a worker process decodes: a bad file must not raise there
    assert sum(b["skipped"] for b in batches) == 4
    assert [c for b in batches for c in b["captions"]] == ["caption 0", "caption 1"]
    assert batches[1]["input_features"] is None  # its three items were all unreadable

    filled = AudioCaptionCollator(feature_extractor, fill_to=3)([dataset[0], None, dataset[1]])
    assert filled["skipped"] == 1 and filled["input_features"].shape[0] == 3  # equal batch sizes for the gathered loss
    assert filled["caption_ids"].tolist() == [0, 1, 0]


def test_duplicate_captions_share_an_id(synthetic_data, feature_extractor):
    train, held_out = load_pairs(synthetic_data)
    vocabulary = caption_vocabulary(train, held_out)
    assert len(vocabulary) == 8
    dataset = AudioCaptionDataset(train, vocabulary, WINDOW)
    batch = AudioCaptionCollator(feature_extractor)([dataset[i] for i in range(6)])
    assert batch["caption_ids"].tolist() == [vocabulary[c] for c in train.captions[:6]]
    assert batch["caption_ids"][0] == batch["caption_ids"][1]  # three clips per caption, listed together


def test_epoch_sampler_is_seeded_per_epoch():
    sampler = EpochShuffleSampler(50, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_hub_dataset_audio_is_read_without_torchcodec(tmp_path):
    # as a Hub parquet dataset stores audio: a {bytes, path} struct, cast to Audio(decode=False) and decoded by soundfile
    from datasets import ClassLabel, Dataset, Features, List, Value

    sf.write(tmp_path / "a.wav", tone(0.3, amplitude=0.5), SAMPLE_RATE)
    sf.write(tmp_path / "b.flac", tone(0.3, rate=48000, channels=2, amplitude=0.5), 48000)
    audio = [{"bytes": None, "path": str(tmp_path / "a.wav")}, {"bytes": (tmp_path / "b.flac").read_bytes(), "path": "b.flac"}, {"bytes": b"junk", "path": None}]
    features = Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "labels": List(ClassLabel(names=["Dog", "Wind_chime"]))})
    dataset = Dataset.from_dict({"audio": audio, "labels": [[0], [1, 0], [1]]}, features=features)
    pairs = pairs_from_hub_dataset(dataset)
    assert pairs.captions == ["The sound of dog", "The sound of wind chime, dog", "The sound of wind chime"]
    items = AudioCaptionDataset(pairs, caption_vocabulary(pairs), WINDOW, crop="center")
    assert items[0]["wave"].shape == items[1]["wave"].shape == (WINDOW,)
    assert items[2] is None  # undecodable bytes: skipped, not raised
    assert pairs.subset([1]).captions == ["The sound of wind chime, dog"]
    assert len(pairs.subset([1]).sources) == 1

    captions = Dataset.from_dict({"audio": audio[:1], "caption": ["a tone"]}, features=Features({"audio": features["audio"], "caption": Value("string")}))
    assert pairs_from_hub_dataset(captions).captions == ["a tone"]


# -- file names that leave the data folder, and metadata that is not JSON ----------------------------------------------


def held_out_layout(root):
    """root/train (one clip) and root/test (one held-out clip), as load_pairs reads them."""
    write_folder(root / "train", [{"file_name": "a.wav", "caption": "rain"}], {"a.wav": (SAMPLE_RATE, tone(0.2, amplitude=0.5))})
    write_folder(root / "test", [{"file_name": "x.wav", "caption": "a held-out clip"}], {"x.wav": (SAMPLE_RATE, tone(0.2, 660.0, amplitude=0.5))})
    return root


@pytest.mark.parametrize(
    "name, message",
    [
        ("../test/x.wav", "leaves the data folder"),
        ("sub/../../test/x.wav", "leaves the data folder"),
        ("{root}/test/x.wav", "leaves the data folder"),
        ("link.wav", r"symbolic link \(or lies under one\) that leads out of the data folder"),
        ("linked/x.wav", r"symbolic link \(or lies under one\) that leads out of the data folder"),
    ],
    ids=["dot-dot", "dot-dot-inside", "absolute", "file-link", "folder-link"],
)
def test_a_file_name_that_leaves_the_folder_is_refused_in_one_line(tmp_path, name, message):
    """A training row that names a held-out clip would train on it silently: it is refused, in one line, with the fix."""
    from align.data import DataError

    root = held_out_layout(tmp_path / "data")
    (root / "train" / "link.wav").symlink_to(root / "test" / "x.wav")
    (root / "train" / "linked").symlink_to(root / "test", target_is_directory=True)
    rows = [{"file_name": "a.wav", "caption": "rain"}, {"file_name": name.format(root=root), "caption": "a held-out clip"}]
    (root / "train" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message) as caught:
        load_pairs(data_dir=root)
    assert "row 2" in str(caught.value) and "\n" not in str(caught.value)


def test_csv_file_names_are_held_in_their_folder_too(tmp_path):
    from align.data import DataError

    root = held_out_layout(tmp_path / "data")
    (root / "train" / "metadata.jsonl").unlink()
    (root / "train" / "metadata.csv").write_text("file_name,caption\na.wav,rain\n../test/x.wav,a held-out clip\n")
    with pytest.raises(DataError, match="metadata.csv, row 2: file name '../test/x.wav' leaves the data folder"):
        pairs_from_folder(root / "train")


def test_a_link_that_stays_inside_the_folder_is_fine(tmp_path):
    root = held_out_layout(tmp_path / "data")
    (root / "train" / "again.wav").symlink_to(root / "train" / "a.wav")
    (root / "train" / "metadata.jsonl").write_text(json.dumps({"file_name": "again.wav", "caption": "rain"}) + "\n")
    assert pairs_from_folder(root / "train").sources == [str(root / "train" / "again.wav")]


def test_a_metadata_line_that_is_no_object_is_named(tmp_path):
    from align.data import DataError, read_metadata

    data = write_folder(tmp_path / "data", [{"file_name": "a.wav", "caption": "rain"}], {})
    with (data / "metadata.jsonl").open("a") as metadata:
        metadata.write('["a.wav", "rain"]\n')
    with pytest.raises(DataError, match=r"metadata.jsonl, line 2: a JSON list, not an object of columns"):
        read_metadata(data)


def test_a_malformed_metadata_line_stops_training_in_one_line(tmp_path):
    line, message = '{"file_name": "a.wav", "caption": ', "not valid JSON"
    """`python -m align.train` on it: one line that names the file, the line and the fix; no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = write_folder(tmp_path / "data", [{"file_name": "a.wav", "caption": "rain"}], {"a.wav": (SAMPLE_RATE, tone(0.2, amplitude=0.5))})
    with (data / "metadata.jsonl").open("a") as metadata:
        metadata.write(line + "\n")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "align.train", "--data-dir", str(data), "--output-dir", str(tmp_path / "run"), "--cpu"],
                         cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-3000:]
    lines = [line for line in run.stderr.strip().splitlines() if "WARNING" not in line and "INFO" not in line]
    assert len(lines) == 1 and f"metadata.jsonl, line 2: {message}" in lines[0] and "Fix or remove the line" in lines[0], run.stderr[-3000:]
    assert "Traceback" not in run.stderr
