"""Stage: the audio prompt encoder, aligned to the world text encoder's states by the project's own trainer.

    python -m world.train_audio --world data/world --clip runs/world/clip --out runs/world/audio --steps 1200

A small `AudioPromptEncoder` (a Wav2Vec2BertModel with hidden 96, 3 layers and the 2-layer adapter, 38
tokens = 3.04 s → 39 positions) is created from a config and saved, then trained by `align.train.main`:
the same loop, loss, target cache, data loading and checkpoints as the real system, only smaller. The
held-out split it evaluates on is `<world>/audio/test`: voices it never hears in training. Resumable:
a second call continues from the newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig

from align import train as align_train
from align.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings
from align.targets import encode_captions
from world.settings import NUM_AUDIO_TOKENS, TEXT_HIDDEN, use_threads, stage_parser


def make_audio_encoder(empty_embedding: torch.Tensor, seed: int = 0) -> AudioPromptEncoder:
    torch.manual_seed(seed)
    audio_config = adapter_settings(
        Wav2Vec2BertConfig(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=384,
                           conv_depthwise_kernel_size=15, hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
                           feat_proj_dropout=0.0, final_dropout=0.0),
        output_hidden_size=TEXT_HIDDEN,
    )
    encoder = AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=audio_config, num_audio_tokens=NUM_AUDIO_TOKENS))
    encoder.set_empty_embedding(empty_embedding)
    return encoder


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "audio", steps=1200, batch_size=48, minutes=False)
    parser.add_argument("--clip", default="runs/world/clip", help="the CLIP stage's output (text_encoder/, tokenizer/)")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    out = Path(args.out)
    clip = Path(args.clip)
    start_from = out / "init"
    if not (start_from / "config.json").exists():  # the untrained encoder align.train starts from
        text_encoder = CLIPTextModel.from_pretrained(clip / "text_encoder", use_safetensors=True).eval()
        empty = encode_captions([""], text_encoder, CLIPTokenizer.from_pretrained(clip / "tokenizer"))[0]
        make_audio_encoder(empty, args.seed).save_pretrained(start_from)
        SeamlessM4TFeatureExtractor().save_pretrained(start_from)
    return align_train.main([
        "--data-dir", str(Path(args.world) / "audio"), "--audio-model", str(start_from),
        "--text-encoder", str(clip / "text_encoder"), "--tokenizer", str(clip / "tokenizer"),
        "--target-cache-dir", str(out / "targets"), "--output-dir", str(out),
        "--train-batch-size", str(args.batch_size), "--max-train-steps", str(args.steps), "--learning-rate", str(args.lr),
        "--lr-warmup-steps", str(max(args.steps // 20, 1)), "--weight-decay", "0.01", "--seed", str(args.seed),
        "--num-workers", "1", "--eval-steps", str(max(args.steps // 4, 1)), "--eval-batch-size", "64",
        "--checkpointing-steps", str(max(args.steps // 6, 1)), "--checkpoints-total-limit", "1",
        "--resume-from-checkpoint", "latest", "--logging-steps", "50", "--max-eval-items", "0", "--cpu",
    ])


if __name__ == "__main__":
    main()
