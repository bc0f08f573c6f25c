"""The world's sizes, and its CLIP tokenizer: what every training stage and the shipped models must agree on.

Sequence length: spoken captions last 1.0-2.4 s, so the audio window is 38 tokens (3.04 s) and every
conditioning sequence has 1 + 38 = 39 positions: the tokenizer pads captions to 39, the UNet is trained
on 39-position text states, and the audio encoder emits 39 positions. (Under CLIP's causal attention the
first 39 positions of a 77-position encoding equal a 39-position one; a caption here is at most 8 tokens.)
Halving the real 76-token window halves the audio encoder's cost, and nothing is lost.
"""

from __future__ import annotations

NUM_AUDIO_TOKENS = 38
TEXT_LENGTH = 1 + NUM_AUDIO_TOKENS
TEXT_HIDDEN = 64  # the width of the text states the UNet attends to (SD 2.1: 1024)


def world_tokenizer():
    """The real CLIP tokenizer (built offline from the BPE merges open_clip ships), padding to TEXT_LENGTH."""
    from architectures.clip_tokenizer import clip_tokenizer

    return clip_tokenizer(max_length=TEXT_LENGTH)
