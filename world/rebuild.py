"""The one command: rebuild the world and retrain everything, then ship it to models/world and measure it.

    python -m world.rebuild                      # everything (more than 6 h on 2 cores), resuming
    python -m world.rebuild --from-committed     # the data, the assembly and the evaluations, from the stages in models/world_stages
    python -m world.rebuild --from unet          # redo the UNet and everything after it (after --from-committed too: the
                                                 # committed stages before it are not trained again, nor by a plain resume)
    python -m world.rebuild --only evaluate      # just one stage (its inputs must exist)
    python -m world.rebuild --smoke --world /tmp/w --runs /tmp/r --models /tmp/m   # every stage, tiny (a few minutes)

Stages, in order (each its own module and command; each writes a marker file when finished, so a killed run
started again skips what is done, and the alignment stages resume from their last checkpoint). A killed run, even
one begun with --from, resumes with plain `python -m world.rebuild`: the stages it still has to redo are kept in
<runs>/redo.json. A stage that runs again after it finished starts afresh: its earlier run is moved to
<runs>/<stage>.previous (replacing the one before), so its old checkpoints are not resumed. The picture side comes
first and the sound side after it, so `--from speech` redoes only the ears (the picture side is already 100 %
from text; the error is in the ears):

    build     world.build        pictures; the captions spoken by many engines' voices through a microphone
                                 (train / held-out voices of trained engines / the held-out engine, piper), and said
                                 the hard ways (inside a request, over music in a big room, pitched)
    sounds    world.sounds       everyday sounds: real recordings from Debian packages fetched and checked, their
                                 augmented training clips, held-out recordings and sources, their emoji pictures
    clip      world.train_clip   CLIP text + image towers, contrastive; the text tower is then frozen
    vae       world.train_vae    AutoencoderKL, 32×32 → 8×8×4
    unet      world.train_unet   UNet2DConditionModel on the latents, conditioned on the frozen text tower
    sharpen   world.train_unet   a second, gentler cycle from the unet stage's weights (--init): the first, cut by its
                                 time cap, drew some squares round enough to read as circles
    words     world.train_words  the frozen text tower learns the sound captions' new words (only their rows), its
                                 image tower the emoji: the shape captions' states do not change
    sound_vae world.train_vae    a cycle of the VAE on shapes and sounds half and half (--init)
    sound_unet world.train_unet  a cycle of the UNet on both, from sharpen's, on sound_vae's latents (--init)
    speech    world.sentences    thousands of other English sentences, spoken by the training voices  (--pretrain-speech)
    pretrain  world.pretrain_speech  the audio backbone learns speech: CTC on characters  (--pretrain-speech)
    audio     world.train_audio  the pretrained backbone + a fresh adapter, aligned by align.train to the text tower
    refine    world.train_audio  a second learning-rate cycle from the audio stage's encoder (--init): the first cycle
                                 ends at learning rate zero while held-out retrieval still climbs
    polish    world.train_audio  a third cycle from refine's encoder at half the peak learning rate, with every caption
                                 a negative at every step (--extra-negatives 72)
    sound_ears world.train_audio a cycle from polish's ears on speech, hard speech and sounds (--init)
    sound_mix world.train_audio  a gentler cycle from sound_ears' ears with every spoken clip listed twice
                                 (--speech-repeat 2): the sounds go on climbing while the speech wins back its share
    sound_more world.train_audio a third, gentler cycle from sound_mix's ears, on sounds from more sources a class
                                 (world/sound_sources/more_sources.tsv, added after sound_mix was trained)
    speech_expert world.train_audio  a cycle from polish's ears on the speech alone (--only speech, MSE weight 5): the
                                 shipped ears' speech expert
    sound_expert world.train_audio   a cycle from sound_more's ears on the sounds alone (--only sounds): their sound expert
    sound_spectrum world.train_audio the same cycle hearing every clip normalised by fixed per-bin statistics, which keep
                                 its spectral shape (--fixed-mel-statistics): the second sound expert
    route     world.route_ears   the shipped ears: the experts, each as trained, and a router that tells speech from other
                                 sound (every cycle that taught one backbone both cost it one of them)
    speech_clap world.train_clap CLAP on the spoken captions alone (--speech-only): the speech world's scorer
    clap      world.train_clap   a cycle of that CLAP on the spoken captions and the sounds (--init): the scorer's ears
    assemble  world.assemble     AudioToImagePipeline + scorer, saved to models/world (float16 safetensors)
    evaluate  world.evaluate     held-out voices → pictures → model-free checker; text, cascade and random baselines; CLAP-scored
    edit      world.edit_eval    a rendered picture changed by a spoken caption, per strength, judged by the checker

The two pretraining stages run only with --pretrain-speech (and in --smoke): measured on these CPUs, their
35 minutes bought the alignment nothing (CTC stayed on its all-blank plateau, and alignment from its backbone
scored below alignment from scratch in the same time; world/README.md, "What each choice bought"), so a full rebuild
gives those minutes to alignment instead.

Once a stage runs, every later stage runs too (their inputs changed). Wall times go to <runs>/timings.json (a killed
attempt's too: saved as it runs, and counted with its stage when that resumes) and, with the results, to
world/RESULTS.md (full runs only). Stages with a time cap (`--minutes`) stop early on a busy machine rather than
overrun the session; the steps they did are in each stage's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from world.stage import write_json
from world.stage_inputs import COMMITTED_PARTS, RECORD, RESTORED, STAGE_INPUTS, restore, seconds_recorded, stage_input

STAGES = ("build", "sounds", "clip", "vae", "unet", "sharpen", "words", "sound_vae", "sound_unet", "speech", "pretrain", "audio", "refine",
          "polish", "sound_ears", "sound_mix", "sound_more", "speech_expert", "sound_expert", "sound_spectrum", "route", "speech_clap", "clap", "assemble", "evaluate", "edit")
# The stages `--from-committed` does not run: those whose outputs are committed in STAGE_INPUTS (world.stage_inputs,
# float16) and those only they depend on (unet before sharpen, audio and refine before polish), so that it goes on from
# there on a fresh machine (world/README.md, "Rebuilding it")
COMMITTED = tuple(stage for stage in STAGES if stage in COMMITTED_PARTS or stage in ("unet", "audio", "refine"))
FROM_COMMITTED_RECORD = "from_committed.json"  # in <runs>: this folder's committed stages are not trained here
PRETRAINING = ("speech", "pretrain")  # run only with --pretrain-speech (see the module doc)
RESULTS_FILE = Path(__file__).parent / "RESULTS.md"

# How the audio stages align (world.train_audio → align.train): 48 clips a step over two one-thread processes,
# frequency warping and masks; in bf16 where the CPU computes it in hardware (world.train_audio's --precision auto)
ALIGN_RECIPE = ["--batch-size", "48", "--warp-frequencies", "0.12", "--freq-masks", "2", "--processes", "2", "--num-workers", "0"]
FULL = {
    # measured on 2 cores: build ~16 clips/s spoken + microphone (9 min for 120 a caption); align 25-45 clips/s a process.
    # 144 a caption: the six trained engines get 24 each, as the five before espeak-ng-l2 got from 120
    "build": ["--images-per-caption", "150", "--clips-per-caption", "144", "--test-clips-per-engine", "1"],
    # 400 augmented clips of each of the 24 classes (from 4-46 training recordings a class), 150 pictures a class
    "sounds": ["--clips-per-class", "400", "--images-per-class", "150"],
    "words": ["--steps", "300", "--minutes", "5"],
    # a VAE trained on shapes draws an emoji as a blob of a shape's colour: a cycle on both kinds, half and half
    "sound_vae": ["--steps", "1500", "--batch-size", "64", "--lr", "5e-4", "--minutes", "15"],
    "sound_unet": ["--steps", "12000", "--batch-size", "64", "--lr", "5e-4", "--minutes", "25"],
    "sound_ears": ["--steps", "2000", "--lr", "5e-4", "--extra-negatives", "96", *ALIGN_RECIPE],
    # sound_ears left the sounds' training clips at 81 % and held-out speech at 0.81 (from 0.90): speech listed twice is
    # 45 % of the rows instead of 29 %, at a gentler peak rate (world/README.md, "Everyday sounds"). MSE weight 5: the
    # padding positions after the caption, which the UNet reads for place and shape, follow the text tower's (cosine
    # 0.88 → 0.98 on speech, pictures 91.2 → 93.5 %; world/README.md, "A heavier MSE term fixes it")
    "sound_mix": ["--steps", "3000", "--lr", "3e-4", "--extra-negatives", "96", "--speech-repeat", "2", "--mse-weight", "5",
                  *ALIGN_RECIPE],
    # 55 recordings from 22 packages the candidates list lacked (1-5 more sources for 23 of the 24 classes): a classifier
    # probe of the ears' backbone heard held-out sources 35 → 43 % with the first 42 of them (two seeds); sound_mix's
    # recipe, shorter and gentler, from its ears (world/README.md, "Everyday sounds")
    "sound_more": ["--steps", "1000", "--lr", "2e-4", "--extra-negatives", "96", "--speech-repeat", "2", "--mse-weight", "5",
                   *ALIGN_RECIPE],
    # The two experts of the shipped ears (world.route_ears): one backbone that learned both lost speech for every sound
    # it learned, blended or trained together, so each expert trains on its kind alone. MSE weight 5: the padding
    # positions the UNet reads follow the text tower's, as in the sound cycles. Routed, against sound_more's ears alone:
    # held-out voices 89.4 → 93.8 %, requests / music / pitched 62.5 / 54.2 / 66.7 → 75.0 / 75.0 / 76.4 %, sounds
    # 45.3 / 33.3 → 48.4 / 34.7 % (world/README.md, "Two experts and a router"). A sound expert from scratch (1500
    # steps at 1e-3) was still underfit: R@1 0.328 / 0.200 against 0.562 / 0.373 from sound_more's
    # 72 clips a caption said the hard ways (requests in 32 phrasings or random words, wider rooms and pitch; world.build):
    # 1500 steps at a higher peak than the 600 at 2e-4 that 6 a caption had: held-out requests in phrasings no stage heard
    # R@1 0.606 → 0.704, music in a room 0.722 → 0.806, pitched 0.764 → 0.819 (world/README.md, "Requests in other
    # words, and longer than the window")
    "speech_expert": ["--steps", "1500", "--lr", "3e-4", "--extra-negatives", "96", "--only", "speech", "--mse-weight", "5", *ALIGN_RECIPE],
    # 2400 steps, not 1200: held-out sources R@1 0.373 → 0.413 alone (600 steps 0.320; world/README.md, "Synthetic sources do
    # not stand in for recorded ones")
    "sound_expert": ["--steps", "2400", "--lr", "3e-4", "--extra-negatives", "96", "--only", "sounds", "--mse-weight", "5", *ALIGN_RECIPE],
    # The per-clip normalisation w2v-BERT's features are made with (for speech) removes a sound's spectral shape; with fixed
    # statistics this expert keeps it, and errs on other clips than sound_expert: averaged, the two hear held-out
    # recordings / sources 0.484 / 0.360 → 0.547 / 0.467 (R@1; world/README.md, "Two ways to hear a sound")
    "sound_spectrum": ["--steps", "2400", "--lr", "3e-4", "--extra-negatives", "96", "--only", "sounds", "--mse-weight", "5",
                       "--fixed-mel-statistics", *ALIGN_RECIPE],
    "route": [],
    "speech": ["--clips", "6000", "--test-clips", "150"],
    "pretrain": ["--minutes", "25", "--batch-size", "16"],
    "clip": ["--steps", "1200", "--minutes", "4"],
    # hidden 144 + frequency warping and masks: at equal wall time as good as hidden 96 without them, and ahead per step
    # (runs/exp e1/e2, world/README.md); two processes use both cores
    "audio": ["--steps", "2600", "--hidden", "144", *ALIGN_RECIPE],
    # the same recipe again from the audio stage's encoder, ~1.1 s a step on 2 cores (79 min): held-out R@1 0.72 → 0.87
    "refine": ["--steps", "4400", *ALIGN_RECIPE],
    # a third cycle, gentler (peak 5e-4 instead of 1e-3): refine's R@1 sat flat through its first 1100 steps at the high rate;
    # held-out R@1 0.867 → 0.883 (held-out engine 0.875 → 0.903), in bf16 where the CPU has it: fp32 measured the same (world/README.md).
    # Every one of the 72 captions a negative at every step (a batch of 48 holds about 35), so each clip always meets the
    # captions one word from its own: from the same encoder, held-out R@1 0.924 → 0.933, piper 0.847 → 0.903 (world/README.md)
    "polish": ["--steps", "4400", "--lr", "5e-4", "--extra-negatives", "72", *ALIGN_RECIPE],
    # 1500 steps (6 min) left its loss near log(72) and its held-out caption at 4 %; 4500 steps (11 min) reached 43 %.
    # Unstable from run to run: on the build with accented voices 4500 steps ended at 18 % (colour near chance) and
    # 6500 at 46 % but colour 58 %, below the shipped scorer's 73 % on the same clips (world/README.md); seed 1 reached 53 %. A stalled
    # run (training loss above log 6 at 55 % of its steps) now starts again with the next seed (world.train_clap)
    "speech_clap": ["--steps", "4500", "--minutes", "15", "--speech-only"],
    # a CLAP trained from scratch on both (4207 steps, 15 min) named the sounds (50 % and 40 %) but the spoken colour
    # at 59 % (cascade 35 %); from the speech CLAP, at a gentler rate, it keeps the speech and learns the sounds
    # (world/README.md, "Everyday sounds")
    "clap": ["--steps", "3000", "--minutes", "11", "--lr", "5e-4"],
    "vae": ["--steps", "6000", "--batch-size", "64", "--minutes", "12"],
    "unet": ["--steps", "12000", "--batch-size", "64", "--minutes", "20"],
    # 15 min more of the UNet at a third of the rate: text → image squares read as circles 2 → 1 of 360
    "sharpen": ["--steps", "12000", "--batch-size", "64", "--minutes", "15", "--lr", "3e-4"],
    "assemble": [],
    "evaluate": ["--steps", "25", "--guidance", "3.0"],  # guidance 3 beat 7.5 on text → image in a trial run
    "edit": ["--steps", "25", "--guidance", "3.0", "--limit", "144"],
}
SMOKE = {
    "build": ["--images-per-caption", "3", "--clips-per-caption", "1", "--test-clips-per-engine", "1", "--unheard-clips-per-engine", "1",
              "--hard-clips-per-caption", "1"],
    "sounds": ["--clips-per-class", "2", "--images-per-class", "3"],
    "words": ["--steps", "3"],
    "sound_vae": ["--steps", "3", "--batch-size", "8"],
    "sound_unet": ["--steps", "3", "--batch-size", "8"],
    "sound_ears": ["--steps", "2", "--batch-size", "8", "--num-workers", "0"],
    "sound_mix": ["--steps", "2", "--batch-size", "8", "--num-workers", "0", "--speech-repeat", "2"],
    "sound_more": ["--steps", "2", "--batch-size", "8", "--num-workers", "0", "--speech-repeat", "2"],
    "speech_expert": ["--steps", "2", "--batch-size", "8", "--num-workers", "0", "--only", "speech"],
    "sound_expert": ["--steps", "2", "--batch-size", "8", "--num-workers", "0", "--only", "sounds"],
    "sound_spectrum": ["--steps", "2", "--batch-size", "8", "--num-workers", "0", "--only", "sounds", "--fixed-mel-statistics"],
    "route": ["--clips-per-kind", "4"],
    "speech": ["--clips", "24", "--test-clips", "4"],
    "pretrain": ["--steps", "2", "--batch-size", "4"],
    "clip": ["--steps", "5"],
    "audio": ["--steps", "2", "--batch-size", "8", "--warp-frequencies", "0.12", "--freq-masks", "2", "--processes", "2", "--num-workers", "0"],
    "refine": ["--steps", "2", "--batch-size", "8", "--num-workers", "0"],
    "polish": ["--steps", "2", "--batch-size", "8", "--lr", "5e-4", "--num-workers", "0"],
    "speech_clap": ["--steps", "3", "--speech-only"],
    "clap": ["--steps", "3"],
    "vae": ["--steps", "3", "--batch-size", "8"],
    "unet": ["--steps", "3", "--batch-size", "8"],
    "sharpen": ["--steps", "3", "--batch-size", "8", "--lr", "3e-4"],
    "assemble": [],
    "evaluate": ["--steps", "2", "--limit", "4"],
    "edit": ["--steps", "2", "--limit", "2"],
}


# Warm restarts: stage → (the stage whose command it repeats, the finished weights it starts from, under <runs>), with a
# fresh optimizer and learning-rate cycle (`--init`) and its own output folder
WARM_RESTARTS = {"sharpen": ("unet", "unet/unet"), "refine": ("audio", "audio/final"), "polish": ("audio", "refine/final"),
                 "sound_vae": ("vae", "vae/vae"), "sound_unet": ("unet", "sharpen/unet"), "sound_ears": ("audio", "polish/final"),
                 "sound_mix": ("audio", "sound_ears/final"), "sound_more": ("audio", "sound_mix/final"),
                 "speech_expert": ("audio", "polish/final"), "sound_expert": ("audio", "sound_more/final"),
                 "sound_spectrum": ("audio", "sound_more/final"), "clap": ("clap", "speech_clap/clap")}
# Stages that run another stage's command with their own sizes (FULL, SMOKE), in their own folder
SAME_COMMAND = {"speech_clap": "clap"}


# --from-committed builds the speech again for the held-out sets and for ears trained again on the restored stages: a third of the clips
FROM_COMMITTED = {"build": ["--images-per-caption", "150", "--clips-per-caption", "48", "--test-clips-per-engine", "1"]}


def stage_command(stage: str, world: Path, runs: Path, models: Path, extra: list[str]) -> list[str]:
    base, init = WARM_RESTARTS.get(stage, (SAME_COMMAND.get(stage, stage), None))
    module = {"build": "world.build", "sounds": "world.sounds", "speech": "world.sentences", "pretrain": "world.pretrain_speech", "route": "world.route_ears",
              "assemble": "world.assemble", "evaluate": "world.evaluate", "edit": "world.edit_eval"}.get(base, f"world.train_{base}")
    out = runs / stage
    paths = {
        "build": ["--out", str(world)],
        "sounds": ["--out", str(world), "--cache", str(world.parent / "sound_cache")],
        "words": ["--world", str(world), "--clip", str(stage_input(runs, "clip")), "--out", str(out)],
        "speech": ["--out", str(world / "speech")],
        "pretrain": ["--speech", str(world / "speech"), "--out", str(out)],
        "clip": ["--world", str(world), "--out", str(out)],
        # the ears learn the text tower that knows the sounds' words (world.train_words): the shape captions' targets are the
        # clip stage's, unchanged
        "audio": ["--world", str(world), "--clip", str(runs / "words"), "--out", str(out)],
        "clap": ["--world", str(world), "--out", str(out)],
        "route": ["--speech", str(runs / "speech_expert" / "final"), "--sounds", str(runs / "sound_expert" / "final"),
                  str(runs / "sound_spectrum" / "final"), "--world", str(world),
                  "--clip", str(runs / "words"), "--out", str(out)],
        "vae": ["--world", str(world), "--out", str(out)],
        "unet": ["--clip", str(runs / ("words" if stage == "sound_unet" else "clip")), "--vae", str(runs / "vae"), "--out", str(out)],
        "assemble": ["--runs", str(runs), "--out", str(models)],
        "evaluate": ["--models", str(models), "--world", str(world), "--out", str(runs / "eval")],
        "edit": ["--models", str(models), "--world", str(world), "--out", str(out)],
    }[base]
    if stage == "sound_unet":  # the UNet's second picture cycle draws from the sound-aware VAE's latents
        paths = [str(runs / "sound_vae") if p == str(runs / "vae") else p for p in paths]
    if init:
        paths = paths + ["--init", str(stage_input(runs, init))]
    elif stage == "audio":
        paths = paths + pretrained_backbone(runs)
    return [sys.executable, "-m", module, *paths, *extra]


PRETRAINED_CER_MAX = 0.8  # a backbone that spells worse than this has not left CTC's all-blank stage: start fresh


def pretrained_backbone(runs: Path) -> list[str]:
    """`--pretrained <runs>/pretrain/final` when pretraining learned to spell (held-out CER below PRETRAINED_CER_MAX).

    Measured (issue 9): a CTC run stuck on its blank plateau (CER 0.95) gave alignment nothing but lost its time,
    so the audio stage then starts from a fresh backbone; the choice is printed and kept in the audio stage's args."""
    metrics = runs / "pretrain" / "metrics.json"
    if not metrics.exists():
        return []
    cer = json.loads(metrics.read_text()).get("cer", {}).get("test", 1.0)
    use = cer < PRETRAINED_CER_MAX
    print(f"== audio: pretrained backbone {'used' if use else 'NOT used'} (held-out CER {cer:.3f}, threshold {PRETRAINED_CER_MAX})", flush=True)
    return ["--pretrained", str(runs / "pretrain" / "final")] if use else []


def finished_marker(stage: str, world: Path, runs: Path, models: Path) -> Path:
    """The file a stage writes last: if it exists, the stage finished."""
    return {
        "build": world / "world.json",
        "sounds": world / "sounds.json",
        "words": runs / "words" / "metrics.json",
        "sound_vae": runs / "sound_vae" / "metrics.json",
        "sound_unet": runs / "sound_unet" / "metrics.json",
        # the ears' stages: align.train writes the final encoder last
        **{stage: runs / stage / "final" / "model.safetensors" for stage in ("pretrain", "audio", "refine", "polish", "sound_ears", "sound_mix", "sound_more",
                                                                             "speech_expert", "sound_expert", "sound_spectrum")},
        "route": runs / "route" / "metrics.json",
        "speech": world / "speech" / "corpus.json",
        "clip": runs / "clip" / "metrics.json",
        "speech_clap": runs / "speech_clap" / "metrics.json",
        "clap": runs / "clap" / "metrics.json",
        "vae": runs / "vae" / "metrics.json",
        "unet": runs / "unet" / "metrics.json",
        "sharpen": runs / "sharpen" / "metrics.json",
        "assemble": models / "pipeline" / "model_index.json",
        "evaluate": runs / "eval" / "results.json",
        "edit": runs / "edit" / "results.json",
    }[stage]


def run_folder(stage: str, world: Path, runs: Path, models: Path) -> Path | None:
    """The folder under <runs> a stage trains in (its checkpoints, log and marker); None for a stage that writes elsewhere."""
    marker = finished_marker(stage, world, runs, models)
    return runs / marker.relative_to(runs).parts[0] if marker.is_relative_to(runs) else None


def set_aside(folder: Path | None) -> None:
    """Move a finished run out of the way of a fresh one, to <folder>.previous (replacing the one before)."""
    if folder is None or not folder.exists():
        return
    previous = folder.with_name(folder.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    folder.rename(previous)
    print(f"== {folder.name}: its earlier run moved to {previous}", flush=True)


HEARTBEAT_SECONDS = 30.0  # how often a running stage's time so far is saved: a killed attempt loses at most this much


def run_timed(cmd: list[str], stage: str, timings: dict, timings_path: Path) -> int:
    """Run a stage's command and time it into <runs>/timings.json.

    While it runs, its time so far (with any earlier attempts' that were killed) is saved every HEARTBEAT_SECONDS under
    "stopped": a killed attempt's time is counted when the stage resumes, under "interrupted", next to the finishing
    attempt's own under "stages"."""
    earlier = timings.setdefault("stopped", {}).get(stage, 0.0)
    start = time.perf_counter()
    finished = threading.Event()

    def save(so_far: float) -> None:
        timings["stopped"][stage] = round(earlier + so_far, 1)
        write_json(timings_path, timings)

    def heartbeat() -> None:
        while not finished.wait(HEARTBEAT_SECONDS):
            save(time.perf_counter() - start)

    save(0.0)
    clock = threading.Thread(target=heartbeat, daemon=True)
    clock.start()
    try:
        returncode = subprocess.run(cmd).returncode
    finally:
        finished.set()
        clock.join()
    if returncode != 0:
        save(time.perf_counter() - start)
        return returncode
    del timings["stopped"][stage]
    timings.setdefault("interrupted", {}).pop(stage, None)
    if earlier:
        timings["interrupted"][stage] = earlier
    timings["stages"][stage] = round(time.perf_counter() - start, 1)
    write_json(timings_path, timings)
    return 0


def forget_stopped_attempts(timings: dict, stage: str) -> None:
    """A stage redone from scratch: the killed attempts of its earlier run are not part of the new one's time."""
    for key in ("stopped", "interrupted"):
        timings.get(key, {}).pop(stage, None)


def stage_seconds(timings: dict, stage: str) -> float:
    """A finished stage's time: its finishing attempt's, plus that of attempts killed before it (resumed from their checkpoints)."""
    return timings["stages"][stage] + timings.get("interrupted", {}).get(stage, 0.0)


def total_seconds(timings: dict) -> float:
    return sum(stage_seconds(timings, stage) for stage in timings["stages"])


def own_seconds(stage: str, world: Path, runs: Path, models: Path) -> float | None:
    """A finished stage's time where it did not run in this rebuild: for one restored from models/world_stages, the time
    its run took there; for one run by its own command, the "seconds" its marker, metrics or stage.json record, else the time from
    the oldest file in its folder to its marker; None where it did not finish."""
    marker = finished_marker(stage, world, runs, models)
    if not marker.exists():
        return None
    folder = run_folder(stage, world, runs, models)
    if folder and (folder / RESTORED).exists():  # a committed copy: only the record of its run counts, not the copy's file times
        return seconds_recorded(folder / RESTORED)
    seconds = seconds_recorded(marker, marker.parent / "metrics.json", *([folder / RECORD] if folder else []))
    if seconds is not None:
        return seconds
    files = [f.stat().st_mtime for f in folder.rglob("*") if f.is_file()] if folder else []
    return marker.stat().st_mtime - min(files) if files else None


def results_markdown(runs: Path, timings: dict, command: str, world: Path | None = None, models: Path | None = None) -> str:
    def earlier_build(stage: str) -> bool:  # a stage that finished before the world was last built trained on older data
        if world is None or stage == "build" or not (world / "world.json").exists():
            return False
        marker = finished_marker(stage, world, runs, models or Path("models/world"))
        return marker.exists() and marker.stat().st_mtime < (world / "world.json").stat().st_mtime

    def metrics(stage: str) -> dict:
        path = runs / stage / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def pct(scores: dict) -> str:
        return ", ".join(f"{k} {100 * v:.0f} %" for k, v in scores.items()) or "?"

    lines = ["# The world in miniature: results", "",
             f"Produced by `{command}` on {os.cpu_count()} CPU cores ({platform.machine()}, no GPU; fp32, except where a stage says bf16); every figure below is from that run.", "",
             "## Time per stage", "", "| stage | minutes | what it did |", "|---|---|---|"]
    done = {stage: metrics(stage) for stage in ("clip", "speech_clap", "clap", "vae", "unet", "sharpen", "words", "sound_vae", "sound_unet")}
    sounds = json.loads((world / "sounds.json").read_text()) if world is not None and (world / "sounds.json").exists() else {}

    def held_out(stage: str) -> list[tuple[str, dict]]:  # an ears stage's retrieval on the held-out sets RESULTS.md names
        path = runs / stage / "held_out.json"
        scores = json.loads(path.read_text()) if path.exists() else {}
        return [(name, scores[part]) for name, part in (("held-out voices", "test"), ("held-out engine", "test_engine"),
                ("held-out sound recordings", "test_sound_recordings"), ("held-out sound sources", "test_sound_sources")) if scores.get(part)]

    def heard(stage: str) -> str:  # an audio stage's steps and held-out caption retrieval
        latest = metrics(stage).get("latest", {})
        args = runs / stage / "args.json"  # align.train records the precision its steps ran in, and its extra negatives
        settings = json.loads(args.read_text()) if args.exists() else {}
        recipe = "bf16 autocast" if settings.get("mixed_precision") == "bf16" else "fp32"
        if settings.get("extra_negatives"):
            recipe += f", {settings['extra_negatives']} cached captions added as negatives a step"
        figures = "; ".join(f"{name}: R@1 {r['R@1']:.3f}, top caption right {100 * r['all']:.0f} %" for name, r in held_out(stage))
        return f"align.train in {recipe}, {latest.get('step', '?')} steps; over the world's captions, {figures or 'no held-out figures'}; per-token cosine {latest.get('cosine', float('nan')):.3f}"

    def routed() -> str:  # the shipped ears: the experts and their router
        figures = "; ".join(f"{name} {r['R@1']:.3f}" for name, r in held_out("route"))
        route = metrics("route")
        right = route.get("routed_right", {})
        shares = ", ".join(f"{name} {100 * right[part]:.0f} %" for name, part in (("held-out voices", "test"), ("held-out sound sources", "test_sound_sources"))
                           if part in right)
        folders = {side: route.get(side, []) for side in ("speech", "sounds")}  # one folder (a str) or several a side
        experts = {side: [Path(f).parent.name for f in ([names] if isinstance(names, str) else names)] for side, names in folders.items()}
        owners = {side: "'s and ".join(names or ["?"]) + "'s" + (" (averaged)" if len(names) > 1 else "") for side, names in experts.items()}
        ears = f"{owners['speech']} ears, {owners['sounds']}"
        return (f"{ears}, and their router ({100 * right.get('train', float('nan')):.0f} % of its training clips "
                f"routed right; {shares or '?'}); R@1 over the world's captions: {figures or '?'} (the shipped ears)")

    def restarted(seeds: list[int]) -> str:  # world.train_clap starts again with the next seed when a run stalls
        if len(seeds) < 2:
            return ""
        dropped = f"seed {seeds[0]} stalled above log 6 and was" if len(seeds) == 2 else \
            f"seeds {', '.join(map(str, seeds[:-1]))} stalled above log 6 and were"
        return f" from seed {seeds[-1]} ({dropped} dropped)"

    pretrain = metrics("pretrain")
    cer = pretrain.get("cer", {})
    notes = {
        "clip": f"{done['clip'].get('steps', '?')} steps; image → caption on fresh renders: {pct(done['clip'].get('retrieval', {}))}",
        "audio": heard("audio"),
        "refine": heard("refine"),
        "polish": heard("polish"),
        "sound_ears": heard("sound_ears"),
        "sound_mix": heard("sound_mix"),
        "sound_more": heard("sound_more"),
        "speech_expert": heard("speech_expert"),
        "sound_expert": heard("sound_expert"),
        "sound_spectrum": heard("sound_spectrum"),
        "route": routed(),
        "sounds": (f"{sounds.get('recordings', '?')} real recordings of {sounds.get('classes', '?')} classes; clips {sounds.get('clips', {})}; "
                   f"{sounds.get('pictures', '?')} pictures" + (f"; packages not fetched: {', '.join(sounds['missing_packages'])}" if sounds.get("missing_packages") else "")),
        "words": (f"{done['words'].get('new_words', '?')} new words; the closest two sound captions' states at cosine "
                  f"{done['words'].get('before', {}).get('sound_max_cosine', float('nan')):.3f} → {done['words'].get('after', {}).get('sound_max_cosine', float('nan')):.3f}; "
                  f"the shape captions' states unchanged; sound pictures → their caption {100 * done['words'].get('sound_image_to_caption', float('nan')):.0f} %"),
        "sound_vae": f"{done['sound_vae'].get('steps', '?')} steps from the vae stage's; checker on reconstructions: {pct(done['sound_vae'].get('reconstruction_checker', {}))}",
        "sound_unet": f"{done['sound_unet'].get('steps', '?')} steps of 64 latents from the sharpen stage's UNet, half of them sounds (the shipped UNet)",
        "pretrain": f"{pretrain.get('steps', '?')} steps, {pretrain.get('samples_per_second', '?')} clips/s; character error rate: "
                    f"held-out voices {cer.get('test', float('nan')):.3f}, held-out engine {cer.get('test_engine', float('nan')):.3f}",
        **{stage: f"{done[stage].get('steps', '?')} steps{restarted(done[stage].get('seeds', []))}{' from speech_clap' if stage == 'clap' else ''}; "
                  "clip → caption: " + "; ".join(f"{part}: {pct(scores)}" for part, scores in done[stage].get("held_out_retrieval", {}).items())
           for stage in ("speech_clap", "clap")},
        "vae": f"{done['vae'].get('steps', '?')} steps; checker on reconstructions: {pct(done['vae'].get('reconstruction_checker', {}))}",
        "unet": f"{done['unet'].get('steps', '?')} steps of 64 latents",
        "sharpen": f"{done['sharpen'].get('steps', '?')} more steps of 64 latents from the unet stage's weights",
    }
    total = total_seconds(timings)
    for stage in STAGES:
        own = own_seconds(stage, world, runs, models or Path("models/world")) if world is not None and stage not in timings["stages"] else None
        if stage in timings["stages"]:
            seconds = stage_seconds(timings, stage)
            note = " (stopped and resumed from its checkpoint; the time includes the stopped attempts)" if stage in timings.get("interrupted", {}) else ""
            note += " (ran on an earlier build of the world: its data were drawn again since)" if earlier_build(stage) else ""
            lines.append(f"| {stage} | {seconds / 60:.1f} | {notes.get(stage, '')}{note} |")
        elif own is not None:
            total += own
            source = ("trained earlier and committed in models/world_stages, restored by this rebuild" if (runs / stage / RESTORED).exists()
                      else "run by its own command, not by this rebuild")
            lines.append(f"| {stage} | {own / 60:.1f} | {notes.get(stage, '')} ({source}: the time is its own record's) |")
    lines += [f"| **total** | **{total / 60:.1f}** | |", "", "## Spoken caption → image, judged without a trained model", ""]
    results = runs / "eval" / "results.md"
    lines.append(results.read_text() if results.exists() else "(the evaluation did not run)")
    edit = runs / "edit" / "results.md"
    if edit.exists():
        lines += ["", "## Editing a picture with a sound (world.edit_eval)", "",
                  "A rendered scene, changed by a held-out voice saying a caption that differs in all three attributes:", "",
                  edit.read_text()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world (git-ignored)")
    parser.add_argument("--runs", type=Path, default=Path("runs/world"), help="stage outputs, logs, checkpoints (git-ignored)")
    parser.add_argument("--models", type=Path, default=Path("models/world"), help="where the shipped pipeline and scorer go")
    parser.add_argument("--from", dest="start", choices=STAGES, help="rerun this stage and all after it")
    parser.add_argument("--only", choices=STAGES, help="run just this stage")
    parser.add_argument("--pretrain-speech", action="store_true", help="also run the speech and pretrain stages (CTC pretraining of the audio backbone)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks every stage runs, in minutes; results mean nothing")
    parser.add_argument("--report", action="store_true", help="only write world/RESULTS.md again from <runs>' timings and results")
    parser.add_argument("--from-committed", action="store_true",
                        help="go on from the stage outputs committed in models/world_stages (world.stage_inputs): "
                             f"{', '.join(COMMITTED)} are not run; the data, assembly and evaluation are")
    args = parser.parse_args(argv)
    command = "python -m world.rebuild" + (" --smoke" if args.smoke else "") + (" --from-committed" if args.from_committed else "")
    if args.report:  # the report names the rebuild it describes: `--report --from-committed` after a --from-committed run
        timings = json.loads((args.runs / "timings.json").read_text())
        RESULTS_FILE.write_text(results_markdown(args.runs, timings, command, args.world, args.models))
        print(f"wrote {RESULTS_FILE}")
        return timings
    sizes = SMOKE if args.smoke else {**FULL, **FROM_COMMITTED} if args.from_committed else FULL
    args.runs.mkdir(parents=True, exist_ok=True)
    timings_path = args.runs / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {"stages": {}}

    if args.from_committed:  # later stages and world.assemble read <runs>/<stage> whether or not this machine trained it
        write_json(args.runs / FROM_COMMITTED_RECORD, list(COMMITTED))
        for stage in COMMITTED:
            if restore(stage, args.runs):
                print(f"== {stage}: restored from {STAGE_INPUTS / stage} (committed)", flush=True)

    def runs_it(stage: str) -> bool:
        if args.from_committed and stage in COMMITTED + PRETRAINING:
            return False
        return stage not in PRETRAINING or args.pretrain_speech or args.smoke or args.only == stage

    # The stages still to redo, kept on disk so that a killed run resumes as it began: a --from run's, and every stage
    # after one that ran (their inputs changed), even where an older run's marker still stands.
    redo_path = args.runs / "redo.json"
    redo = json.loads(redo_path.read_text()) if redo_path.exists() else []
    if args.start:
        redo = [stage for stage in STAGES[STAGES.index(args.start):] if runs_it(stage)]
        write_json(redo_path, redo)
    for stage in STAGES:
        if args.only and stage != args.only:
            continue
        if not runs_it(stage):
            committed = args.from_committed and stage in COMMITTED
            print(f"== {stage}: not run ({'its output is committed in ' + str(STAGE_INPUTS) if committed else 'pretraining is off; --pretrain-speech turns it on'})",
                  flush=True)
            continue
        marker = finished_marker(stage, args.world, args.runs, args.models)
        # A stage an earlier --from-committed run did not train has no marker (only what later stages read is restored): it
        # is finished unless its folder holds a killed run of it
        folder = run_folder(stage, args.world, args.runs, args.models)
        restored = (not marker.exists() and stage in COMMITTED and (args.runs / FROM_COMMITTED_RECORD).exists()
                    and (folder is None or not folder.exists() or (folder / RESTORED).exists()))
        if (marker.exists() or restored) and not (stage in redo or args.only):
            print(f"== {stage}: done before ({marker if marker.exists() else 'committed, restored by an earlier --from-committed run'}), skipped",
                  flush=True)
            continue
        if marker.exists() or restored:  # a finished run being redone; otherwise the folder holds this stage's killed run
            set_aside(folder)
            forget_stopped_attempts(timings, stage)
        if not args.only:
            redo = list(dict.fromkeys([*redo, *(later for later in STAGES[STAGES.index(stage) + 1:] if runs_it(later))]))
            write_json(redo_path, redo)
        cmd = stage_command(stage, args.world, args.runs, args.models, sizes[stage])
        print(f"== {stage}: {' '.join(cmd[1:])}", flush=True)
        if run_timed(cmd, stage, timings, timings_path) != 0:
            raise SystemExit(f"stage {stage} failed (its log is above and under {args.runs}); fix it and run the same command again to resume")
        if stage in redo:
            redo.remove(stage)
            write_json(redo_path, redo)
        print(f"== {stage}: {stage_seconds(timings, stage) / 60:.1f} min", flush=True)
    if timings["stages"]:
        print(f"total training and evaluation time: {total_seconds(timings) / 60:.1f} min (per stage: {timings_path})")
    if not args.smoke and (args.runs / "eval" / "results.json").exists():
        RESULTS_FILE.write_text(results_markdown(args.runs, timings, command, args.world, args.models))
        print(f"wrote {RESULTS_FILE}")
    return timings


if __name__ == "__main__":
    main()
