"""Stage: the audio prompt encoder, aligned to the world text encoder's states by the project's own trainer.

    python -m world.train_audio --world data/world --clip runs/world/clip --out runs/world/audio --steps 1800 \\
        --pretrained runs/world/pretrain/final        # a backbone that learned speech (world.pretrain_speech)
    python -m world.train_audio --world data/world --clip runs/world/clip --out runs/world/audio   # from scratch
    python -m world.train_audio --world data/world --clip runs/world/clip --out runs/world/refine \\
        --init runs/world/audio/final          # a second cosine cycle (warm restart) from a finished run's encoder

With --pretrained, align.train takes that plain Wav2Vec2BertModel and gives it a fresh adapter, exactly as a
user aligns facebook/w2v-bert-2.0. Without it, a small `AudioPromptEncoder` (backbone_config: hidden 96, 3
layers, and the 2-layer adapter) is created from a config. Either way the window is 38 tokens (3.04 s → 39
positions) and `align.train.main` trains it: the same loop, loss, target cache, data loading and checkpoints as
the real system, only smaller. align.train evaluates on `<world>/audio/test` (held-out voices of the trained
engines); at the end `evaluate_folders` measures caption retrieval, the colour / shape / position of the top
caption and which words it put for which (`misheard`) on test/ and test_engine/ (the engine never heard), per
engine, into <out>/held_out.json. Resumable:
a second call continues from the newest checkpoint. With --init, training starts from a whole finished encoder
(backbone and adapter) with a fresh optimizer and learning-rate cycle: the audio stage ends with its learning rate
at zero while still improving, so a warm restart continues the climb (world.rebuild's refine stage, then its
polish stage at half the peak rate, `--lr 5e-4`). The training step runs under bf16 autocast where the CPU computes
bf16 in hardware (Intel AMX, AVX512-BF16; `--precision auto`), fp32 elsewhere: bench/cpu_precision.py prints the gain.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

import torch
from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig

from align import train as align_train
from align.data import read_metadata
from hearing.audio import fit_to_window
from hearing.device import cpu_has_bf16
from hearing.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings
from hearing.features import BatchedFeatureExtractor
from hearing.text_states import encode_captions
from world.checker import ATTRIBUTES
from world.settings import NUM_AUDIO_TOKENS, TEXT_HIDDEN
from world.stage import use_threads, stage_parser, write_json


def backbone_config(hidden: int = 96, layers: int = 3) -> Wav2Vec2BertConfig:
    """The world-size w2v-BERT (no adapter): hidden 96 and 3 layers by default, 4 heads of 24, FFN 4x."""
    heads = 4 if hidden % 4 == 0 else 2
    return Wav2Vec2BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden,
                              output_hidden_size=hidden, conv_depthwise_kernel_size=15, hidden_dropout=0.0, activation_dropout=0.0,
                              attention_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0)


def make_audio_encoder(empty_embedding: torch.Tensor, seed: int = 0, hidden: int = 96, layers: int = 3,
                       num_audio_tokens: int = NUM_AUDIO_TOKENS) -> AudioPromptEncoder:
    torch.manual_seed(seed)
    audio_config = adapter_settings(backbone_config(hidden, layers), output_hidden_size=TEXT_HIDDEN)
    encoder = AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=audio_config, num_audio_tokens=num_audio_tokens))
    encoder.set_empty_embedding(empty_embedding)
    return encoder


def misheard(heard: list[dict], said: list[dict]) -> dict[str, int]:
    """What the ears mistook for what, commonest first: "left → right": 10 when the top caption of ten clips that said
    "left" said "right" (each value belongs to one attribute only, so the words name it)."""
    counts = Counter(f"{_name(s, a)} → {_name(h, a)}" for h, s in zip(heard, said) for a in ((*ATTRIBUTES,) if "sound" not in s else ("sound",))
                     if _name(h, a) != _name(s, a))
    return dict(counts.most_common())


HELD_OUT_PARTS = ("test", "test_engine", "test_unheard", "test_carrier", "test_music_room", "test_pitch",
                  "test_sound_recordings", "test_sound_sources")


def _name(scene: dict, attribute: str) -> str:
    """A scene's value of `attribute`; for a scene of the other kind (a sound heard for a spoken caption), its caption."""
    return scene.get(attribute) or scene["caption"]


@torch.no_grad()
def evaluate_folders(encoder_dir: str | Path, audio_dir: str | Path, text_encoder_dir: str | Path, tokenizer_dir: str | Path,
                     parts: tuple[str, ...] = HELD_OUT_PARTS, legacy_articles: bool = False, batch_size: int = 64,
                     spoken_only: bool = False) -> dict:
    """Caption retrieval over every caption of the world (the shapes' and the sounds') on each held-out folder, overall
    and per engine (or per sound source): R@1, R@5, how often the top caption is right (for a spoken caption: its
    colour, shape and position, and all three; for a sound: its class, as "sound" and "all"), which words it heard for
    which (`misheard`), and the per-token cosine of each clip's states to its own caption's
    (align.metrics.sequence_cosine, BOS left out).

    The candidates are the captions as the text encoder reads them (`legacy_articles`: "a orange", for text
    encoders trained before issue 9); a clip's own caption is looked up the same way. `spoken_only`: the shapes'
    captions alone are the candidates (for ears that never trained on the sounds, whose captions' states would
    otherwise stand as distractors they never learned to tell apart)."""
    from hearing.encoder import load_audio_encoder
    from hearing.features import BatchedFeatureExtractor
    from align.metrics import sequence_cosine, similarity_matrix
    from world.checker import scene_hits
    from world.scenes import legacy_caption, world_scenes

    scenes = [s for s in world_scenes() if not (spoken_only and "sound" in s)]
    spell = legacy_caption if legacy_articles else (lambda c: c)
    captions = [spell(s["caption"]) for s in scenes]
    index = {c: i for i, c in enumerate(captions)}
    text_encoder = CLIPTextModel.from_pretrained(text_encoder_dir, use_safetensors=True, dtype=torch.float32).eval()
    targets = encode_captions(captions, text_encoder, CLIPTokenizer.from_pretrained(tokenizer_dir))
    encoder = load_audio_encoder(encoder_dir, dtype=torch.float32).eval()
    has_own = (Path(encoder_dir) / "preprocessor_config.json").exists()  # else the library defaults, as w2v-BERT 2.0's
    extractor = BatchedFeatureExtractor(SeamlessM4TFeatureExtractor.from_pretrained(encoder_dir) if has_own else SeamlessM4TFeatureExtractor())
    results = {}
    for part in parts:
        folder = Path(audio_dir) / part
        if not (folder / "metadata.jsonl").exists():
            continue
        rows = read_metadata(folder)
        ranks, top, cosines = [], [], []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            waves = [sf.read(folder / r["file_name"], dtype="float32")[0] for r in chunk]
            batch = encoder.features(waves, extractor, crop="center")
            audio = encoder(**batch).last_hidden_state
            sim = similarity_matrix(audio, targets[:, : audio.shape[1]].to(audio.dtype))
            truth = torch.tensor([index[spell(r["caption"])] for r in chunk])
            ranks.append((sim > sim.gather(1, truth[:, None])).sum(1))
            top.append(sim.argmax(1))
            cosines.append(sequence_cosine(audio, targets[truth, : audio.shape[1]].to(audio.dtype)))
        ranks, top, cosines = torch.cat(ranks).numpy(), torch.cat(top).numpy(), torch.cat(cosines).numpy()

        def summary(keep) -> dict:
            keep = np.asarray(keep)
            got = [scenes[t] for t in top[keep]]
            want = [rows[i] for i in keep]
            verdicts = [scene_hits(g, w) for g, w in zip(got, want)]
            keys = sorted({k for v in verdicts for k in v}, key=lambda k: (*ATTRIBUTES, "sound", "all").index(k))
            hits = {k: float(np.mean([v[k] for v in verdicts if k in v])) for k in keys}
            return {"clips": int(len(keep)), "R@1": float(np.mean(ranks[keep] < 1)), "R@5": float(np.mean(ranks[keep] < 5)),
                    **{k: round(v, 4) for k, v in hits.items()}, "cosine": round(float(np.mean(cosines[keep])), 4),
                    "misheard": misheard(got, want)}

        results[part] = summary(range(len(rows)))
        field = "package" if any("sound" in r for r in rows) else "engine"
        for name in sorted({r.get(field, "?") for r in rows}):
            results[f"{part}/{name}"] = summary([i for i, r in enumerate(rows) if r.get(field, "?") == name])
    return results


def save_and_measure(ears: AudioPromptEncoder, extractor: SeamlessM4TFeatureExtractor, world: Path, clip: Path, out: Path) -> dict:
    """Ears made outside align.train (blended, widened) as align.train leaves its own: <out>/final with their feature
    extractor, and their retrieval on every held-out set of `world` (evaluate_folders) in <out>/held_out.json, printed."""
    final = out / "final"
    ears.save_pretrained(final)
    extractor.save_pretrained(final)
    held_out = evaluate_folders(final, world / "audio", clip / "text_encoder", clip / "tokenizer")
    write_json(out / "held_out.json", held_out)
    for part, scores in held_out.items():
        if "/" not in part:
            print(f"{part}: R@1 {scores['R@1']:.3f}, cosine {scores['cosine']:.3f}", flush=True)
    return held_out


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "audio", steps=1200, batch_size=48, minutes=False)
    parser.add_argument("--clip", default="runs/world/clip", help="the CLIP stage's output (text_encoder/, tokenizer/)")
    parser.add_argument("--pretrained", default=None, help="start from this pretrained backbone (world.pretrain_speech's final/) instead of a fresh one")
    parser.add_argument("--init", default=None, help="start from this whole AudioPromptEncoder (a finished run's final/): backbone and adapter, "
                        "with a fresh optimizer and learning-rate cycle")
    parser.add_argument("--hidden", type=int, default=96, help="backbone hidden size when starting fresh")
    parser.add_argument("--layers", type=int, default=3, help="backbone layers when starting fresh")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--warp-frequencies", type=float, default=0.0, help="align.train's vocal tract length perturbation (0: off)")
    parser.add_argument("--freq-masks", type=int, default=0, help="align.train's SpecAugment frequency masks per clip (0: off)")
    parser.add_argument("--random-eq", type=float, default=0.0, help="align.train's random equalisation in dB (0: off; heard with --fixed-mel-statistics only)")
    parser.add_argument("--processes", type=int, default=1, help="train in this many CPU processes (torch.distributed, one thread each; "
                        "--batch-size is split among them); measured here: 41-45 clips/s for two at hidden 144, 24-27 for one on a shared CPU")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="autocast precision of the training step ('auto': bf16 where the CPU computes it in hardware, "
                        "hearing.device.cpu_has_bf16; bench/cpu_precision.py measures the gain; else fp32). The held-out measurement at the end runs in fp32")
    parser.add_argument("--extra-negatives", type=int, default=0,
                        help="align.train's cached captions added as negatives each step; 72 or more: every caption of the world is a "
                        "negative at every step, so each clip always meets the captions one word away from its own")
    parser.add_argument("--contrast-level", choices=["token", "sequence", "both"], default="token",
                        help="align.train's --contrast-level; 'token', as every shipped stage of the world was trained")
    parser.add_argument("--mse-weight", type=float, default=1.0, help="align.train's --mse-weight; 1.0, as every shipped stage of the world was trained")
    parser.add_argument("--legacy-articles", action="store_true", help='the text encoder reads "a orange" (trained before issue 9)')
    parser.add_argument("--speech-repeat", type=int, default=1,
                        help="list each spoken clip this many times among the training rows, each sound once (in <out>/mix, hard links "
                        "to <world>/audio): the speech keeps its share of every batch while the sounds are learned (1: the folder as it is)")
    parser.add_argument("--only", choices=["speech", "sounds"], default=None,
                        help="train on the spoken rows alone or the sounds' alone (in <out>/mix, as --speech-repeat): an expert for "
                        "world.route_ears, which keeps each expert as it is trained (default: both kinds)")
    parser.add_argument("--fixed-mel-statistics", action="store_true",
                        help="with --init: the encoder hears every clip normalised by each mel bin's mean and deviation over the training "
                        "clips (kept in its config; hearing.features) instead of by the clip's own, which keeps a sound's spectral shape")
    args = parser.parse_args(argv)
    if args.fixed_mel_statistics and not args.init:
        raise SystemExit("--fixed-mel-statistics starts from a finished encoder: give --init too")
    if args.speech_repeat < 1:
        raise SystemExit(f"--speech-repeat {args.speech_repeat}: give 1 (each clip once) or more")
    use_threads(args.threads)
    out = Path(args.out)
    clip = Path(args.clip)
    if args.init and args.pretrained:
        raise SystemExit("give --init (a whole encoder) or --pretrained (a backbone for a fresh adapter), not both")
    start_from = Path(args.init or args.pretrained or out / "init")
    if args.init and not (start_from / "model.safetensors").exists():
        raise SystemExit(f"--init {start_from}: no model.safetensors there; give a finished run's final/ folder")
    if "LOCAL_RANK" not in os.environ:  # the parent lays out the training folder once, before its processes start
        folder = training_folder(Path(args.world) / "audio", out, args.speech_repeat, args.only)
        if args.fixed_mel_statistics and not (out / "init" / "model.safetensors").exists():
            with_training_statistics(start_from, folder / "train", out / "init", args.seed)
    if args.fixed_mel_statistics:
        start_from = out / "init"
    if not (args.pretrained or args.init) and not (start_from / "config.json").exists():  # the untrained encoder align.train starts from
        text_encoder = CLIPTextModel.from_pretrained(clip / "text_encoder", use_safetensors=True, dtype=torch.float32).eval()
        empty = encode_captions([""], text_encoder, CLIPTokenizer.from_pretrained(clip / "tokenizer"))[0]
        make_audio_encoder(empty, args.seed, args.hidden, args.layers).save_pretrained(start_from)
        SeamlessM4TFeatureExtractor().save_pretrained(start_from)
    if args.processes > 1 and "LOCAL_RANK" not in os.environ:  # start the processes, each running this stage's training
        if args.batch_size % args.processes:
            raise SystemExit(f"--batch-size {args.batch_size} must divide among --processes {args.processes}")
        with socket.socket() as probe:  # a free port for the processes to meet on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes), "--master_port", str(port),
                   "-m", "world.train_audio", *(argv if argv is not None else sys.argv[1:])]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "WORLD_THREADS": "1"})
        result = json.loads((out / "metrics.json").read_text()) | {"final_dir": str(out / "final")}
    else:
        result = align_train.main(align_arguments(args, start_from, out, clip, args.batch_size // args.processes))
        if "LOCAL_RANK" in os.environ:
            return result  # a process of a multi-process run: the parent measures the held-out sets once
    result["held_out"] = evaluate_folders(result["final_dir"], Path(args.world) / "audio", clip / "text_encoder", clip / "tokenizer",
                                          legacy_articles=args.legacy_articles)
    (out / "held_out.json").write_text(json.dumps(result["held_out"], indent=1))
    return result


def with_training_statistics(encoder_dir: Path, train: Path, out: Path, seed: int = 0, clips: int = 1000) -> None:
    """`encoder_dir`'s encoder saved in `out` with its audio model's `mel_statistics` measured on `clips` random windows
    of `train`'s clips: from then on every clip it hears is normalised by them (hearing.features)."""
    encoder = AudioPromptEncoder.from_pretrained(encoder_dir, use_safetensors=True)
    rows = read_metadata(train)
    rng = np.random.default_rng(seed)
    waves = [fit_to_window(sf.read(train / rows[i]["file_name"], dtype="float32")[0], encoder.window_samples, "random", rng)
             for i in rng.permutation(len(rows))[:clips]]
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(encoder_dir)
    encoder.config.audio_config.mel_statistics = BatchedFeatureExtractor(extractor).log_mel_statistics(waves)
    encoder.save_pretrained(out)
    extractor.save_pretrained(out)


def training_folder_path(audio: Path, out: Path, speech_repeat: int, only: str | None = None) -> Path:
    return audio if speech_repeat == 1 and only is None else out / "mix"


def training_folder(audio: Path, out: Path, speech_repeat: int, only: str | None = None) -> Path:
    """The audiofolder align.train reads: `audio` itself, or with `speech_repeat` > 1 or `only` ("speech", "sounds") a
    copy made of hard links (a plain copy across file systems) whose train/ metadata lists every spoken row
    `speech_repeat` times and every sound once, or one kind alone, and whose test/ is audio's. Rebuilt when its rows
    differ from what `audio`, `speech_repeat` and `only` give."""
    folder = training_folder_path(audio, out, speech_repeat, only)
    if folder == audio:
        return folder
    import shutil

    for part in ("train", "test"):
        rows = read_metadata(audio / part)
        if part == "train":
            rows = [r for r in rows for _ in range(1 if "sound" in r else speech_repeat)
                    if only is None or ("sound" in r) == (only == "sounds")]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        target = folder / part
        if (target / "metadata.jsonl").exists() and (target / "metadata.jsonl").read_text() == text:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted({r["file_name"] for r in rows}):
            if not (target / name).exists():
                try:
                    os.link(audio / part / name, target / name)
                except OSError:
                    shutil.copyfile(audio / part / name, target / name)
        (target / "metadata.jsonl").write_text(text)
    return folder


def align_arguments(args, start_from: Path, out: Path, clip: Path, batch_size: int) -> list[str]:
    """align.train's command line for this stage (per process: `batch_size` clips a step)."""
    return [
        "--data-dir", str(training_folder_path(Path(args.world) / "audio", out, args.speech_repeat, args.only)), "--audio-model", str(start_from),
        "--text-encoder", str(clip / "text_encoder"), "--tokenizer", str(clip / "tokenizer"),
        "--target-cache-dir", str(out / "targets"), "--output-dir", str(out),
        "--train-batch-size", str(batch_size), "--max-train-steps", str(args.steps), "--learning-rate", str(args.lr),
        "--lr-warmup-steps", str(max(args.steps // 20, 1)), "--weight-decay", "0.01", "--seed", str(args.seed),
        "--num-audio-tokens", str(NUM_AUDIO_TOKENS), "--num-workers", str(args.num_workers), "--eval-steps", str(max(args.steps // 4, 1)), "--eval-batch-size", "64",
        "--checkpointing-steps", str(max(args.steps // 6, 1)), "--checkpoints-total-limit", "1",
        "--resume-from-checkpoint", "latest", "--logging-steps", "50", "--max-eval-items", "0", "--cpu",
        "--warp-frequencies", str(args.warp_frequencies), "--freq-masks", str(args.freq_masks), "--random-eq", str(args.random_eq),
        "--extra-negatives", str(args.extra_negatives), "--contrast-level", args.contrast_level, "--mse-weight", str(args.mse_weight),
        "--mixed-precision", training_precision(args.precision),
    ]


def training_precision(choice: str) -> str:
    """align.train's --mixed-precision for this stage's --precision: 'auto' is bf16 on CPUs with bf16 hardware."""
    if choice == "auto":
        return "bf16" if cpu_has_bf16() else "no"
    return {"bf16": "bf16", "fp32": "no"}[choice]


if __name__ == "__main__":
    main()
    align_train.end_process()  # a process of a multi-process run ends without the teardown that can hang it
