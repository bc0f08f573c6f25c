"""The words a sound and an image are compared over: built-in lists (ESC-50, AudioSet), a file, or entries
given directly, and the prompt each tower reads for an entry ("the sound of x" for CLAP, "a photo of x" for CLIP).

No article is added, so mass nouns ("rain", "footsteps") read right; pass `audio_template="{}"` and
`image_template="{}"` to use captions verbatim.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

VOCABULARY_DIR = Path(__file__).parent / "vocabularies"
BUILTIN_VOCABULARIES = {"esc50": "esc50.txt", "audioset": "audioset.txt"}
DEFAULT_AUDIO_TEMPLATE = "the sound of {}"
DEFAULT_IMAGE_TEMPLATE = "a photo of {}"


@dataclass(frozen=True)
class Vocabulary:
    """Entries (labels or captions) and the prompts each tower reads for them, index for index."""

    entries: tuple[str, ...]
    audio_prompts: tuple[str, ...]
    image_prompts: tuple[str, ...]
    name: str = "custom"

    def __len__(self) -> int:
        return len(self.entries)


def _read_entries(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _phrase(entry: str) -> str:
    text = entry.replace("_", " ").strip()
    # "Dog" → "dog", but keep acronyms and names whose second letter is upper case ("DTMF", "TV").
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def load_vocabulary(
    vocabulary: str | os.PathLike | Sequence[str] | Vocabulary = "esc50",
    audio_template: str = DEFAULT_AUDIO_TEMPLATE,
    image_template: str = DEFAULT_IMAGE_TEMPLATE,
) -> Vocabulary:
    """A built-in name ("esc50", "audioset"), a text file (one entry a line, "#" comments), or a list of entries."""
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, (str, os.PathLike)):
        key = str(vocabulary)
        if key.lower() in BUILTIN_VOCABULARIES:
            name, entries = key.lower(), _read_entries(VOCABULARY_DIR / BUILTIN_VOCABULARIES[key.lower()])
        elif Path(key).is_file():
            name, entries = Path(key).stem, _read_entries(Path(key))
        else:
            raise ValueError(
                f"unknown vocabulary {key!r}: use one of {sorted(BUILTIN_VOCABULARIES)}, the path of a text file "
                "with one word or caption a line, or a list of strings"
            )
    else:
        name, entries = "custom", [str(e).strip() for e in vocabulary]
    if len(entries) < 2:
        raise ValueError(f"a vocabulary needs at least 2 entries to compare distributions over, got {len(entries)}")
    if len(set(entries)) != len(entries):
        dupes = sorted({e for e in entries if entries.count(e) > 1})
        raise ValueError(f"vocabulary {name!r} repeats entries {dupes[:5]}: remove the duplicates")
    for template in (audio_template, image_template):
        if "{}" not in template:
            raise ValueError(f"prompt template {template!r} must contain '{{}}' where the entry goes")
    phrases = [_phrase(e) for e in entries]
    return Vocabulary(
        entries=tuple(entries),
        audio_prompts=tuple(audio_template.format(p) for p in phrases),
        image_prompts=tuple(image_template.format(p) for p in phrases),
        name=name,
    )
