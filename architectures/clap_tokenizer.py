"""CLAP's kind of text tokenizer, built offline: a byte-level BPE RobertaTokenizer with no model hub.

Every byte is a token, so any text tokenizes; merges can make chosen words one token each. The tests' tiny CLAP
(`architectures.tiny_models.tiny_clap`) uses it with no merges; the world's CLAP (`world.train_clap`) with one
merge chain per word of the world.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import RobertaTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0-4, as ClapTextConfig's defaults expect


def clap_tokenizer(words: Iterable[str] = (), max_length: int = 64) -> RobertaTokenizer:
    """Byte-level BPE (the specials, then every byte) plus one merge chain per word in `words`, with and without
    the leading-space marker Ġ; with no words, no merges. Texts are cut to `max_length` tokens."""
    vocab = {token: i for i, token in enumerate(SPECIALS + list(bytes_to_unicode().values()))}
    merges = []
    for word in sorted(set(words)):
        for form in (word, "Ġ" + word):
            current = form[0]
            for char in form[1:]:
                if (current, char) not in merges:
                    merges.append((current, char))
                current += char
                vocab.setdefault(current, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
