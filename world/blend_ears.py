"""A tool for trials: a weighted average in weight space of the speech ears and the ears that learned the sounds.

    python -m world.blend_ears --speech runs/world/polish/final --sounds runs/world/sound_more/final \\
        --sounds-weight 0.9 --world data/world --clip runs/world/words --out /tmp/blend   # a point on the line

The sound cycles (sound_ears, sound_mix, sound_more) start from the speech ears (polish) and move away from them: they learn the
sounds and lose some speech. Both sets of weights come from one line of training, so the straight line between them
stays a good model (weight-space ensembling, WiSE-FT: Wortsman et al., 2022): each parameter is
`(1 - w) * speech + w * sounds`, with `w` = --sounds-weight. Measured on the world, pictures right end to end
(world/README.md, "Everyday sounds"): with sound_mix, w = 0.9 drew held-out voices 90.7 % (the speech ears 91.9 %,
sound_mix alone 88.9 %) and the sounds' held-out recordings 37.5 % (sound_mix 40.6 %). sound_more, trained on more
sources, held the voices about as well alone as on the line (R@1 on held-out voices 0.896, 0.896 and 0.900 at w = 1,
0.95 and 0.9) and the sounds better (held-out sources 0.280 against 0.253), so world.rebuild shipped it at w = 1, until
two experts with a router (world.route_ears) kept both kinds better than any point on the line.

Writes <out>/final (an AudioPromptEncoder with the sound ears' feature extractor, as align.train writes one),
<out>/held_out.json (world.train_audio.evaluate_folders on every held-out set) and, last, <out>/metrics.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import SeamlessM4TFeatureExtractor

from hearing.encoder import AudioPromptEncoder, load_audio_encoder
from world.stage import use_threads, write_json


def blend(speech: AudioPromptEncoder, sounds: AudioPromptEncoder, sounds_weight: float) -> AudioPromptEncoder:
    """`sounds` with every floating-point weight set to (1 - sounds_weight) * speech's + sounds_weight * sounds' (in
    float32); integer buffers are the sound ears'. The two must share one architecture."""
    if not 0.0 <= sounds_weight <= 1.0:
        raise ValueError(f"sounds_weight {sounds_weight}: give a weight from 0 (the speech ears) to 1 (the sound ears)")
    a, b = speech.state_dict(), sounds.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("the speech and sound ears differ in architecture: only ears trained one from the other can be blended")
    mixed = {k: torch.lerp(a[k].float(), b[k].float(), sounds_weight).to(b[k].dtype) if b[k].is_floating_point() else b[k] for k in b}
    sounds.load_state_dict(mixed)
    return sounds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, required=True, help="the speech ears (a finished run's final/ folder)")
    parser.add_argument("--sounds", type=Path, required=True, help="the ears that learned the sounds from them (a final/ folder)")
    parser.add_argument("--sounds-weight", type=float, default=0.9, help="0 = the speech ears, 1 = the sound ears (default: %(default)s)")
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world, for the held-out sets")
    parser.add_argument("--clip", type=Path, default=Path("runs/world/words"), help="the text tower the ears learned (its text_encoder/ and tokenizer/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.sounds_weight <= 1.0:
        parser.error(f"--sounds-weight {args.sounds_weight}: give a weight from 0 (the speech ears) to 1 (the sound ears)")
    for flag, folder in (("--speech", args.speech), ("--sounds", args.sounds)):
        if not (folder / "model.safetensors").exists():
            parser.error(f"{flag} {folder}: no model.safetensors there; give a finished run's final/ folder")
    use_threads(args.threads)
    start = time.perf_counter()
    from world.train_audio import save_and_measure

    ears = blend(load_audio_encoder(args.speech, dtype=torch.float32), load_audio_encoder(args.sounds, dtype=torch.float32), args.sounds_weight)
    save_and_measure(ears, SeamlessM4TFeatureExtractor.from_pretrained(args.sounds), args.world, args.clip, args.out)
    metrics = {"speech": str(args.speech), "sounds": str(args.sounds), "sounds_weight": args.sounds_weight,
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(args.out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
