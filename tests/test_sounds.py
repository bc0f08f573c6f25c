"""The world's everyday sounds: the committed manifest and its splits, the readers of the packages' containers, the
augmentation, the emoji pictures and their model-free checker, and the stage that teaches the text tower new words."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import struct
import subprocess
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from world import sounds
from world.checker import accuracy
from world.scenes import EMOJI_DIR, SOUND_CLASSES, render_scene, sound_scenes, world_scenes

CANDIDATE_COLUMNS = ("class", "source_package", "path_in_package", "md5", "sample_rate", "channels", "duration_s", "bytes", "doubtful", "also_in")


def test_cuts_of_one_take_share_their_take():
    assert sounds.take_of("a/pig_ack1.wav") == sounds.take_of("a/pig_ack4.wav")
    assert sounds.take_of("r/LRBark_1_LA_cut.ogg") == sounds.take_of("r/LRBark_3_LA_cut.ogg")
    assert sounds.take_of("s/Dog1.wav") == sounds.take_of("s/Dog2.wav")
    assert sounds.take_of("s/dog.wav") != sounds.take_of("s/cat.wav")
    assert sounds.take_of("x/dog.wav") != sounds.take_of("y/dog.wav")  # another folder is another recording


def _candidates(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(CANDIDATE_COLUMNS)
        for i, (name, package, file, doubtful) in enumerate(rows):
            writer.writerow([name, package, file, f"{i:032x}", 22050, 1, 1.0, 100, doubtful, ""])
    return path


def test_the_manifest_holds_out_one_whole_package_per_class_and_keeps_takes_on_one_side(tmp_path, monkeypatch):
    monkeypatch.setattr(sounds, "BY_NAME", {"dog": None, "cat": None})
    takes = ("woof", "bark", "growl", "howl", "yap", "whine", "snarl", "sniff")
    rows = [("dog", "big", f"d/{take}_{c}.wav", 0) for take in takes for c in (1, 2)]  # 8 takes of two cuts each
    rows += [("dog", "small", "s/woof.wav", 0), ("dog", "small", "s/yap.wav", 0), ("dog", "mid", "m/a.wav", 0),
             ("dog", "mid", "m/b.wav", 0), ("dog", "mid", "m/c.wav", 0), ("dog", "doubt", "x/d.wav", 1),
             ("dog", "berusky2-data", "b/dog.wav", 0)]
    rows += [("cat", "one", "c/meow.wav", 0), ("cat", "two", "c/purr.wav", 0)]
    manifest = sounds.make_manifest(_candidates(tmp_path / "c.tsv", rows), more=None)
    dogs = [r for r in manifest if r["class"] == "dog"]
    assert {r["package"] for r in dogs} == {"big", "small", "mid"}  # doubtful files and the package over 500 MB left out
    held = {r["package"] for r in dogs if r["split"] == "test_sources"}
    assert held == {"mid"}, "the largest package but one that holds at most 40 % of the class"
    assert all(r["split"] != "test_sources" for r in dogs if r["package"] == "big")
    by_take = defaultdict(set)
    for r in manifest:
        by_take[r["take"]].add(r["split"])
    assert all(len(splits) == 1 for splits in by_take.values())
    assert any(r["split"] == "test_recordings" for r in dogs)
    assert {r["split"] for r in manifest if r["class"] == "cat"} == {"train", "test_sources"}
    with pytest.raises(ValueError, match="held-out source needs two"):
        sounds.make_manifest(_candidates(tmp_path / "one.tsv", [("dog", "a", "a.wav", 0), ("cat", "b", "b.wav", 0), ("cat", "c", "c.wav", 0)]), more=None)


def test_more_sources_only_add_training_recordings_and_leave_the_held_out_sets_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setattr(sounds, "BY_NAME", {"dog": None, "cat": None})
    rows = [("dog", "big", f"d/{take}.wav", 0) for take in ("woof", "bark", "growl", "howl", "yap")]
    rows += [("dog", "small", "s/woof.wav", 0), ("cat", "one", "c/meow.wav", 0), ("cat", "two", "c/purr.wav", 0)]
    candidates = _candidates(tmp_path / "c.tsv", rows)
    more = tmp_path / "more.tsv"
    more.write_text("class\tpackage\tpath\tmd5\tseconds\n"
                    f"dog\tnew\tn/bark1.wav\t{'a' * 32}\t1.0\ndog\tnew\tn/bark2.wav\t{'b' * 32}\t0.5\n"
                    f"cat\tnew\tn/cat.wav\t{'c' * 32}\t1.0\ncow\tnew\tn/cow.wav\t{'d' * 32}\t1.0\n"
                    f"dog\tother\to/woof.wav\t{0:032x}\t1.0\n")  # a class the world lacks, and bytes the candidates hold: left out
    without = sounds.make_manifest(candidates, more=None)
    with_more = sounds.make_manifest(candidates, more=more)
    assert with_more[: len(without)] == without, "the candidates' rows and splits do not move"
    added = with_more[len(without):]
    assert [(r["class"], r["path"], r["split"]) for r in added] == [("dog", "n/bark1.wav", "train"), ("dog", "n/bark2.wav", "train"),
                                                                    ("cat", "n/cat.wav", "train")]
    assert added[0]["take"] == added[1]["take"] == "new:n/bark"  # cuts of one take, as in the candidates
    more.write_text("class\tpackage\tpath\tmd5\tseconds\n" f"cat\ttwo\tc/hiss.wav\t{'e' * 32}\t1.0\n")
    with pytest.raises(ValueError, match="list only new sources"):  # a package the class has: it could be the held-out one
        sounds.make_manifest(candidates, more=more)


def test_the_committed_more_sources_are_in_the_manifest_as_training_recordings():
    manifest = {(r["class"], r["package"], r["path"]): r for r in sounds.read_manifest()}
    more = list(csv.DictReader(sounds.MORE_SOURCES.open(), delimiter="\t"))
    assert len(more) >= 40
    for r in more:
        row = manifest[(r["class"], r["package"], r["path"])]
        assert row["split"] == "train" and row["md5"] == r["md5"] and row["licence"] in sounds.LICENCES.values()


def test_the_committed_manifest_has_every_class_on_every_side_and_an_emoji_for_each():
    manifest = sounds.read_manifest()
    assert len(SOUND_CLASSES) >= 20
    for c in SOUND_CLASSES:
        rows = [r for r in manifest if r["class"] == c.name]
        assert {r["split"] for r in rows} >= {"train", "test_sources"}, c.name
        held = {r["package"] for r in rows if r["split"] == "test_sources"}
        assert len(held) == 1 and not any(r["package"] in held for r in rows if r["split"] != "test_sources")
        assert (EMOJI_DIR / f"{c.name}.png").exists()
    assert all(r["licence"] and len(r["md5"]) == 32 for r in manifest)
    assert len({c.caption for c in SOUND_CLASSES}) == len(SOUND_CLASSES)


def test_the_opensfx_catalogue_reader_names_members_by_index_and_title():
    members = [('"Cow". Original "moo.wav" by x. License: CC-BY 3.0.', b"RIFFcow"), ('"Lumber mill: Chainsaw". By y.', b"RIFFsaw!")]
    table = len(members) * 8
    body, entries = b"", []
    for description, data in members:
        text = description.encode("latin-1") + b"\0"
        entries.append((table + len(body), 1 + len(text) + len(data)))
        body += bytes([len(text)]) + text + data
    catalogue = b"".join(struct.pack("<II", offset | 0x80000000 if i == 0 else offset, size) for i, (offset, size) in enumerate(entries)) + body
    assert sounds.opensfx_members(catalogue) == {"00_Cow.wav": b"RIFFcow", "01_Lumber_mill_Chainsaw.wav": b"RIFFsaw!"}


def _rcc(files: dict[str, bytes]) -> bytes:
    """A version-2 Qt resource file with one folder holding `files`, the second one zlib-compressed."""
    names, name_offsets = b"", {}
    for name in ["res", *files]:
        name_offsets[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    payloads, data_offsets = b"", {}
    for k, (name, data) in enumerate(files.items()):
        stored = struct.pack(">I", len(data)) + zlib.compress(data) if k == 1 else data
        data_offsets[name] = len(payloads)
        payloads += struct.pack(">I", len(stored)) + stored
    tree = struct.pack(">IHII", 0, 2, 1, 1) + b"\0" * 8  # the root: one child (index 1)
    tree += struct.pack(">IHII", name_offsets["res"], 2, len(files), 2) + b"\0" * 8
    for k, name in enumerate(files):
        tree += struct.pack(">IHHHI", name_offsets[name], 1 if k == 1 else 0, 0, 0, data_offsets[name]) + b"\0" * 8
    header = 4 + 4 * 4
    tree_offset = header
    payload_offset = tree_offset + len(tree)
    names_offset = payload_offset + len(payloads)
    return b"qres" + struct.pack(">IIII", 2, tree_offset, payload_offset, names_offset) + tree + payloads + names


def test_the_qt_resource_reader_finds_plain_and_compressed_members():
    files = {"bark.ogg": b"OggS plain", "moo.ogg": b"OggS compressed " * 20}
    assert sounds.rcc_members(_rcc(files)) == {"res/bark.ogg": files["bark.ogg"], "res/moo.ogg": files["moo.ogg"]}
    with pytest.raises(ValueError, match="not a Qt resource"):
        sounds.rcc_members(b"junk" * 10)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian) to build a package")
def test_extraction_checks_every_file_follows_links_and_names_what_it_could_not_fetch(tmp_path, monkeypatch):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: sounds-test\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    folder = root / "usr" / "share" / "game"
    folder.mkdir(parents=True)
    (folder / "dog.wav").write_bytes(b"woof")
    (folder / "other").mkdir()
    (folder / "other" / "dog.wav").symlink_to("../dog.wav")
    (folder / "cat.wav").write_bytes(b"meow")
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(cache / "sounds-test_1_all.deb")], check=True, capture_output=True)
    md5 = lambda data: hashlib.md5(data).hexdigest()  # noqa: E731
    rows = [{"package": "sounds-test", "path": "usr/share/game/other/dog.wav", "md5": md5(b"woof")},
            {"package": "sounds-test", "path": "usr/share/game/cat.wav", "md5": md5(b"not what the package holds")},
            {"package": "gone-package", "path": "x.wav", "md5": md5(b"x")}]
    monkeypatch.setattr(sounds, "fetch_package", lambda package, cache: next(iter(sorted(cache.glob(f"{package}_*.deb"))), None))
    lines = []
    good, missing = sounds.extract(rows, cache, tmp_path / "out", lines.append)
    assert [r["path"] for r in good] == ["usr/share/game/other/dog.wav"]
    assert (tmp_path / "out" / "sounds-test" / "usr/share/game/other/dog.wav").read_bytes() == b"woof"
    assert missing == ["gone-package"]
    assert any("1 of 2 files" in line for line in lines)


def test_augmentation_keeps_a_clip_finite_bounded_and_within_the_window():
    rng = np.random.default_rng(0)
    wave = np.sin(np.arange(80_000) / 7).astype(np.float32) * 0.5
    others = [np.random.default_rng(1).standard_normal(8000).astype(np.float32)]
    for _ in range(20):
        clip, info = sounds.augment(wave, rng, others, window=48_000)
        assert clip.dtype == np.float32 and np.all(np.isfinite(clip)) and np.abs(clip).max() <= 1.0
        assert len(clip) <= 48_000 * 1.2 and "peak_db" in info


def test_a_crop_of_a_recording_s_silence_becomes_its_loudest_window_and_other_clips_stay_as_they_were():
    window = 16_000
    wave = np.zeros(10 * window, np.float32)  # nine windows of silence, then a tone
    wave[-window:] = np.sin(np.arange(window) / 5).astype(np.float32)
    for seed in range(12):
        clip, info = sounds.augment(wave, np.random.default_rng(seed), [], window)
        assert np.abs(clip).max() > 10 * sounds.SILENT_PEAK, (seed, info)
        assert info["crop_s"] == 9.0 or np.abs(wave[int(info["crop_s"] * 16_000):][:window]).max() > sounds.SILENT_PEAK
    loud = np.sin(np.arange(3 * window) / 5).astype(np.float32)  # no silent crop: the crop is the first draw, as before the rule
    start = int(np.random.default_rng(5).integers(0, 2 * window + 1))
    assert sounds.augment(loud, np.random.default_rng(5), [], window)[1]["crop_s"] == round(start / 16_000, 2)
    assert sounds.loudest_start(wave, window) == 9 * window


def test_clap_training_leaves_out_a_silent_clip_in_one_line(tmp_path, capsys):
    import soundfile as sf

    from world.train_clap import clip_features, world_clap_processor

    folder = tmp_path / "train"
    folder.mkdir()
    sf.write(folder / "loud.wav", (np.sin(np.arange(16_000) / 5) * 0.5).astype(np.float32), 16_000)
    sf.write(folder / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    (folder / "metadata.jsonl").write_text('{"file_name": "loud.wav", "caption": "a dog barking"}\n'
                                           '{"file_name": "silent.wav", "caption": "rain"}\n')
    features, rows = clip_features(folder, world_clap_processor(["a", "dog", "barking", "rain"]))
    assert [r["file_name"] for r in rows] == ["loud.wav"] and features.shape[0] == 1
    assert "1 of 2 clips left out" in capsys.readouterr().out


def test_the_checker_names_the_sound_of_every_render_and_judges_shapes_and_sounds_together():
    rng = np.random.default_rng(3)
    scenes = sound_scenes() * 5
    images = [render_scene(s, rng) for s in scenes]
    assert accuracy(images, scenes)["sound"] >= 0.99
    mixed = world_scenes()[:4] + sound_scenes()[:4]
    scores = accuracy([render_scene(s, rng) for s in mixed], mixed)
    assert set(scores) == {"colour", "shape", "position", "sound", "all"}


def test_the_words_stage_moves_only_the_new_words_and_separates_the_sound_captions(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import CLIPProcessor

    from world.settings import world_tokenizer
    from world.train_clip import image_processor, make_clip
    from world.train_words import main as train_words

    clip = tmp_path / "clip"
    model = make_clip(0)
    model.save_pretrained(clip / "clip")
    CLIPProcessor(image_processor=image_processor(), tokenizer=world_tokenizer()).save_pretrained(clip / "clip")
    images = tmp_path / "world" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, scene in enumerate(world_scenes()):
        render_scene(scene, rng).save(images / f"{i:03d}.png")
        rows.append(json.dumps({"file_name": f"{i:03d}.png", "caption": scene["caption"]}) + "\n")
    (images / "metadata.jsonl").write_text("".join(rows))
    metrics = train_words(["--world", str(tmp_path / "world"), "--clip", str(clip), "--out", str(tmp_path / "words"),
                           "--steps", "12", "--threads", "1"])
    assert metrics["shape_states_unchanged"] and metrics["new_words"] > 0
    assert metrics["after"]["shape_max_cosine"] == metrics["before"]["shape_max_cosine"]
    assert metrics["after"]["sound_max_cosine"] < metrics["before"]["sound_max_cosine"]
    from transformers import CLIPTextModel

    before = model.text_model.get_input_embeddings().weight
    after = CLIPTextModel.from_pretrained(tmp_path / "words" / "text_encoder").get_input_embeddings().weight
    changed = torch.nonzero((before != after).any(dim=1)).flatten().tolist()
    assert 0 < len(changed) == metrics["new_words"]


def test_every_recipe_draws_a_finite_audible_recording_of_its_length_and_a_new_source_each_call():
    from world.synth_sounds import SYNTHESIZABLE, synthesize

    assert len(SYNTHESIZABLE) >= 15 and set(SYNTHESIZABLE) <= {c.name for c in SOUND_CLASSES}
    for name in SYNTHESIZABLE:
        first = synthesize(name, np.random.default_rng(7), seconds=2.0)
        again = synthesize(name, np.random.default_rng(7), seconds=2.0)
        other = synthesize(name, np.random.default_rng(8), seconds=2.0)
        assert first.dtype == np.float32 and len(first) == 32_000 and np.all(np.isfinite(first)), name
        assert abs(np.abs(first).max() - 0.9) < 1e-4 and np.sqrt(np.mean(first**2)) > 0.005, name
        assert np.array_equal(first, again), name  # a seed gives the same recording again
        assert not np.allclose(first, other), name  # another draw is another source
    with pytest.raises(ValueError, match="no recipe for the sound class 'dog'"):
        synthesize("dog", np.random.default_rng(0))


def test_a_synthetic_share_replaces_that_share_of_a_synthesizable_class_s_clips_and_leaves_the_others_as_they_were(tmp_path):
    recordings, rows = tmp_path / "rec", []
    classes = [("siren", "train"), ("dog", "train"), ("train", "train"), ("cat", "train"), ("siren", "test_sources"), ("dog", "test_recordings")]
    for k, (name, split) in enumerate(classes):  # cat comes after siren and train, which have recipes
        path = f"{name}_{k}.wav"
        (recordings / "pkg").mkdir(parents=True, exist_ok=True)
        sf.write(recordings / "pkg" / path, 0.3 * np.sin(np.arange(16_000) * (k + 1) / 9).astype(np.float32), 16_000)
        rows.append({"class": name, "package": "pkg", "path": path, "split": split, "take": path})

    def clips(share: float, audio: Path) -> list[dict]:
        sounds.write_clips(rows, recordings, audio, clips_per_class=8, window=16_000, seed=0, synthetic_share=share)
        return [json.loads(line) for line in (audio / "train" / "metadata.jsonl").read_text().splitlines()]

    plain, mixed = clips(0.0, tmp_path / "a"), clips(0.25, tmp_path / "b")
    assert [r["package"] for r in mixed if r["sound"] == "siren"] == ["pkg"] * 6 + [sounds.SYNTHETIC_PACKAGE] * 2
    assert all(r["package"] == "pkg" for r in mixed if r["sound"] in ("dog", "cat"))  # no recipe: all recordings
    for a, b in zip(plain, mixed):  # every clip made from a recording is the one a build without synthesis makes
        if b["package"] == "pkg":
            assert a == b
            assert np.array_equal(sf.read(tmp_path / "a" / "train" / a["file_name"])[0], sf.read(tmp_path / "b" / "train" / b["file_name"])[0])
    held = (tmp_path / "b" / "test_sound_sources" / "metadata.jsonl").read_text()
    assert sounds.SYNTHETIC_PACKAGE not in held and '"siren"' in held  # held-out clips stay real recordings


def test_the_sounds_build_refuses_a_synthetic_share_outside_0_to_1_in_one_line(capsys):
    with pytest.raises(SystemExit):
        sounds.main(["--synthetic-share", "1.5", "--no-fetch"])
    assert "--synthetic-share 1.5" in capsys.readouterr().err


def test_blending_lays_another_take_of_the_class_over_a_share_of_the_clips_and_leaves_the_rest_as_they_were(tmp_path):
    recordings, rows = tmp_path / "rec", []
    for k, name in enumerate(["dog", "dog", "cat", "cat"]):
        (recordings / "pkg").mkdir(parents=True, exist_ok=True)
        sf.write(recordings / "pkg" / f"{k}.wav", 0.3 * np.sin(np.arange(16_000) * (k + 1) / 9).astype(np.float32), 16_000)
        rows.append({"class": name, "package": "pkg", "path": f"{k}.wav", "split": "train", "take": str(k)})

    def clips(share: float, audio: Path) -> list[dict]:
        sounds.write_clips(rows, recordings, audio, clips_per_class=20, window=16_000, seed=0, blend_share=share)
        return [json.loads(line) for line in (audio / "train" / "metadata.jsonl").read_text().splitlines()]

    plain, blended = clips(0.0, tmp_path / "a"), clips(0.5, tmp_path / "b")
    mixed = [b for b in blended if "blend" in b["augment"]]
    assert 8 <= len(mixed) <= 32 and all(0 <= b["augment"]["blend"]["level_db"] <= 8 for b in mixed)
    for a, b in zip(plain, blended):
        wave_a = sf.read(tmp_path / "a" / "train" / a["file_name"])[0]
        wave_b = sf.read(tmp_path / "b" / "train" / b["file_name"])[0]
        mates = {r["path"] for r in rows if r["class"] == b["sound"]}
        if "blend" in b["augment"]:
            assert b["augment"]["blend"]["path"] in mates and not np.allclose(wave_a, wave_b)
        else:  # its own random stream: a clip left alone is the plain build's
            assert a == b and np.array_equal(wave_a, wave_b)
    with pytest.raises(SystemExit):
        sounds.main(["--blend-share", "-0.1", "--no-fetch"])
    with pytest.raises(ValueError, match="--blend-share 2"):
        sounds.build_sounds(tmp_path / "w", tmp_path / "cache", blend_share=2, fetch=False)


def test_blend_lays_the_other_sound_at_its_level_and_offset_and_keeps_the_peak_in_range():
    wave = np.full(1000, 0.5, np.float32)
    other = np.full(2000, 0.1, np.float32)
    out = sounds.blend(wave, other, level_db=0.0, offset=400)
    assert np.allclose(out[:400], 0.495) and np.allclose(out[400:], 0.99)  # 0.5 + 0.5 = 1.0: all brought down to peak 0.99
    quiet = sounds.blend(wave, other, level_db=20.0, offset=0)
    assert np.allclose(quiet, 0.55, atol=1e-6)  # 20 dB below in power: a tenth of the amplitude
