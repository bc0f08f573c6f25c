"""align: train an audio encoder to give, token by token, the CLIP text states Stable Diffusion 2.1 reads."""

from align.audio import AudioError, load_audio
from align.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, load_audio_encoder
from align.loss import AlignmentLoss
from align.targets import TargetCache, encode_captions

__all__ = ["AudioError", "AudioPromptEncoder", "AudioPromptEncoderConfig", "AlignmentLoss", "TargetCache", "encode_captions", "load_audio", "load_audio_encoder"]
