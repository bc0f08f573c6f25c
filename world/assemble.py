"""Stage: put the trained parts together as the app's offline default, in the repository.

    python -m world.assemble --runs runs/world --out models/world
    python -m world.assemble --audio-encoder runs/world/polish_trial/final --out /tmp/trial   # try other ears, same pictures

Writes, with each model's own `save_pretrained` (safetensors, stored in float16 to keep the repository
small; load them in float32 on a CPU, as the app and the CLI do):

    <out>/pipeline/   an AudioToImagePipeline: vae, audio_encoder, feature_extractor, unet, scheduler,
                      text_encoder and tokenizer (for words mixed in, and for text → image)
    <out>/scorer/clap/, <out>/scorer/clip/   the scorer's CLAP and CLIP (model + processor)
    <out>/scorer/vocabulary.txt              the world's 96 captions (72 spoken scenes, 24 sounds) the scorer compares over

The parts come from the last stage that trained each: the text tower and the scorer's CLIP from `words`, the VAE from
`sound_vae`, the UNet and its sampler from `sound_unet`, the ears from `route` (a speech expert and two sound experts with their router), the
CLAP from `clap`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import ClapModel, ClapProcessor, CLIPModel, CLIPProcessor, CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor

from hearing.encoder import load_audio_encoder
from generate.pipeline import AudioToImagePipeline
from world.scenes import SOUND_CLASSES, world_scenes

STORAGE_DTYPE = torch.float16
MODEL_CARD = """# models/world: the offline default (the world in miniature)

Small models trained from scratch by `python -m world.rebuild` on the world of `world/`: spoken scenes (a red circle
on the left, a blue square in the middle, ...: 4 shapes x 6 colours x 3 positions, captions spoken by many voices of
several speech engines through a simulated microphone; one whole engine and some voices of every other engine were
kept out of training, to measure it) and {sounds} everyday sounds recorded for real (a dog barking, rain falling, a
helicopter, ...; from free games and programs in Debian packages, one whole source package a class held out), each
drawn as its emoji; 32x32 pictures. Nothing here comes from a model hub; the figures are in world/RESULTS.md.

- `pipeline/`: an `AudioToImagePipeline` (generate.pipeline). `audio_encoder`: AudioPromptEncoder (Wav2Vec2BertModel,
  hidden {hidden}, {layers} layers + adapter; 38 tokens = 3.04 s -> 39 positions), trained by `align.train`; `text_encoder` /
  `tokenizer`: a CLIP text tower (hidden 64, 3 layers; the real CLIP BPE tokenizer, 39 positions) trained
  contrastively against a CLIP image tower; `vae`: AutoencoderKL 32x32x3 -> 8x8x4; `unet`: UNet2DConditionModel
  (64/128/128 channels) on those latents, v-prediction; `scheduler`: DPM-Solver++.
- `scorer/clap`, `scorer/clip`: the scorer's CLAP (HTSAT + RoBERTa, byte-level BPE) and CLIP (the same run as the
  text tower); `scorer/vocabulary.txt`: the captions it compares over.

Stored as float16 safetensors; load in float32 on a CPU (`AudioToImagePipeline.from_pretrained(path, dtype=torch.float32)`).
It understands only this world: spoken captions such as "a green triangle on the right", and the sounds of its
{sounds} classes ({classes}).
"""


def assemble_pipeline(runs: Path, audio_encoder: Path | None = None) -> AudioToImagePipeline:
    """The stages' outputs under `runs` as one pipeline; `audio_encoder` (default: the route stage's, the ears that
    hear speech and sounds) lets a trial encoder be measured with the same picture side."""
    audio_encoder = audio_encoder or runs / "route" / "final"
    return AudioToImagePipeline(
        vae=AutoencoderKL.from_pretrained(runs / "sound_vae" / "vae", use_safetensors=True, dtype=torch.float32),
        audio_encoder=load_audio_encoder(audio_encoder, dtype=torch.float32),
        feature_extractor=SeamlessM4TFeatureExtractor.from_pretrained(audio_encoder),
        unet=UNet2DConditionModel.from_pretrained(runs / "sound_unet" / "unet", use_safetensors=True, dtype=torch.float32),
        scheduler=DPMSolverMultistepScheduler.from_pretrained(runs / "sound_unet" / "scheduler"),
        text_encoder=CLIPTextModel.from_pretrained(runs / "words" / "text_encoder", use_safetensors=True, dtype=torch.float32),
        tokenizer=CLIPTokenizer.from_pretrained(runs / "words" / "tokenizer"),
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/world", help="the training stages' outputs")
    parser.add_argument("--out", default="models/world")
    parser.add_argument("--audio-encoder", type=Path, default=None, help="ship this encoder (a training run's final/ folder) "
                        "instead of <runs>/route/final")
    args = parser.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    if args.audio_encoder is not None and not (args.audio_encoder / "model.safetensors").exists():
        parser.error(f"--audio-encoder {args.audio_encoder}: no model.safetensors there; give a finished run's final/ folder")
    for part in ("pipeline", "scorer"):
        shutil.rmtree(out / part, ignore_errors=True)
    pipeline = assemble_pipeline(runs, args.audio_encoder)
    pipeline.to(dtype=STORAGE_DTYPE)
    pipeline.save_pretrained(out / "pipeline", safe_serialization=True)
    clip = CLIPModel.from_pretrained(runs / "words" / "clip", use_safetensors=True, dtype=STORAGE_DTYPE)
    clip.save_pretrained(out / "scorer" / "clip")
    CLIPProcessor.from_pretrained(runs / "words" / "clip").save_pretrained(out / "scorer" / "clip")
    clap = ClapModel.from_pretrained(runs / "clap" / "clap", use_safetensors=True, dtype=STORAGE_DTYPE)
    clap.save_pretrained(out / "scorer" / "clap")
    ClapProcessor.from_pretrained(runs / "clap" / "clap").save_pretrained(out / "scorer" / "clap")
    (out / "scorer" / "vocabulary.txt").write_text("# the world's captions: what the scorer compares sound and picture over\n"
                                                   + "".join(s["caption"] + "\n" for s in world_scenes()))
    audio = pipeline.audio_encoder.config.audio_config
    (out / "README.md").write_text(MODEL_CARD.format(hidden=audio.hidden_size, layers=audio.num_hidden_layers, sounds=len(SOUND_CLASSES),
                                                     classes=", ".join(c.caption for c in SOUND_CLASSES)))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"wrote {out}/pipeline and {out}/scorer ({size:.1f} MB)")
    return out


if __name__ == "__main__":
    main()
