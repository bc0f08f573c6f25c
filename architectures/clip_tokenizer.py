"""The real CLIP tokenizer, built offline: the BPE merges open_clip ships (architectures/assets, MIT licence).

SD 2.1's tokenizer is this vocabulary (49,408 tokens) padded with "!" to 77 positions. Building it here lets the
tests and the world in miniature use the real tokenization without a model hub.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BPE_FILE = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges, as open_clip's SimpleTokenizer builds them."""
    lines = gzip.open(BPE_FILE).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def clip_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """The CLIP tokenizer as SD 2.1 configures it, padding with "!" to `max_length` positions."""
    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token="!", model_max_length=max_length)
