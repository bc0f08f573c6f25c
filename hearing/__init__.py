"""hearing: how the project hears a sound, for every part that does (generation, scoring, evaluation, the app,
training): a sound file read into 16 kHz windows (audio), their w2v-BERT features (features), the audio prompt
encoder that turns a window into CLIP-like states (encoder), the CLIP states of a caption it imitates
(text_states), the device and dtype a model runs on (device), the real models' ids (model_ids), files written whole
(files). Nothing here trains: align/ does, on top of this.

Names load on first use, so `import hearing.audio` (or a command line that only checks its input) does not pay for
importing transformers.
"""

import importlib

_EXPORTS = {
    "AudioError": "hearing.audio",
    "load_audio": "hearing.audio",
    "AudioPromptEncoder": "hearing.encoder",
    "AudioPromptEncoderConfig": "hearing.encoder",
    "load_audio_encoder": "hearing.encoder",
    "encode_captions": "hearing.text_states",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hearing' has no attribute {name!r}")
