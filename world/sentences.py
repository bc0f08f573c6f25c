"""Many different English sentences, and a speech corpus of them: what the world's audio encoder pretrains on.

    python -m world.sentences --out data/world/speech --clips 6000          # ~10 min on one core
    python -m world.sentences --out /tmp/speech --clips 40 --test-clips 10  # a smoke run

The real system's w2v-BERT 2.0 heard millions of hours of people saying everything; the world's encoder should
hear at least thousands of different sentences, not only its 72 captions, before it is aligned (issue 9).
`sentences(count, rng)` mixes four kinds, each drawn fresh (duplicates removed):

- grammar sentences over a built-in vocabulary ("the small dog runs to the old house"),
- sentences about things of a colour, shape and place that are NOT the world's captions ("a green car on the
  left", "the circle is blue"), so the caption words are heard in many contexts and orders,
- runs of 3-8 common English words (the `wordfreq` package's most frequent words when it is installed; the
  built-in vocabulary otherwise), for the sounds of words the grammar does not have,
- the world's own captions, a small share.

Text is lower case letters, spaces and apostrophes (`ALPHABET`): what the CTC pretraining spells
(`world.pretrain_speech`). `write_corpus` speaks the sentences with the training voices (engine first, then a
voice; see `world.build.speak_clips`) through the microphone, into <out>/train, and a few with the held-out
voices (<out>/test) and the held-out engine (<out>/test_engine) to measure the character error rate on.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from world.scenes import COLOURS, POSITIONS, SHAPES, all_scenes, article

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"  # what CTC spells; index 0 of its vocabulary is the blank
MAX_CHARACTERS = 60  # about 4 s of speech at an ordinary rate
COMMON_WORDS = 3000

DETERMINERS = ("the", "a", "this", "that", "my", "your", "our", "one", "every", "some", "no", "his", "her")
ADJECTIVES = (
    "small", "big", "old", "new", "young", "long", "short", "tall", "little", "great", "good", "bad", "happy", "sad",
    "quiet", "loud", "dark", "bright", "warm", "cold", "hot", "soft", "hard", "quick", "slow", "heavy", "light",
    "clean", "dirty", "empty", "full", "strange", "simple", "broken", "round", "flat", "wooden", "tiny", "huge",
    "pretty", "busy", "lazy", "gentle", "careful", "famous", "hidden", "open", "closed", "early", "late", "black",
    "white", "grey", "brown", "pink", "golden", "silver",
)
NOUNS = (
    "dog", "cat", "house", "car", "tree", "river", "mountain", "city", "window", "door", "table", "chair", "book",
    "letter", "road", "bridge", "garden", "flower", "bird", "horse", "boat", "train", "school", "teacher", "child",
    "doctor", "farmer", "king", "queen", "friend", "mother", "father", "sister", "brother", "morning", "evening",
    "night", "winter", "summer", "ocean", "island", "forest", "village", "market", "kitchen", "apple", "bread",
    "coffee", "water", "stone", "wall", "picture", "song", "story", "game", "ball", "box", "bag", "hat", "coat",
    "shoe", "lamp", "clock", "phone", "computer", "engine", "machine", "letter", "voice", "question", "answer",
    "idea", "problem", "money", "paper", "pencil", "cup", "plate", "bottle", "key", "ring", "star", "moon", "sun",
    "cloud", "storm", "fire", "field", "hill", "lake", "street", "station", "office", "student", "player", "singer",
    "baby", "man", "woman", "girl", "boy", "people", "line", "dot", "point", "corner", "edge", "top", "bottom",
)
VERBS = (
    "runs", "walks", "sleeps", "sings", "waits", "falls", "moves", "stops", "turns", "jumps", "smiles", "talks",
    "works", "plays", "shines", "grows", "swims", "flies", "rests", "stays", "climbs", "listens", "laughs", "cries",
)
TRANSITIVE = (
    "sees", "finds", "takes", "makes", "likes", "wants", "needs", "holds", "opens", "closes", "paints", "draws",
    "moves", "builds", "carries", "reads", "writes", "watches", "follows", "cleans", "buys", "sells", "breaks",
)
PREPOSITIONS = ("to", "from", "near", "under", "over", "behind", "beside", "into", "across", "through", "by", "around")
ADVERBS = ("slowly", "quickly", "today", "again", "often", "never", "always", "here", "there", "now", "soon", "later")
SUBJECTS = ("i", "you", "we", "they", "he", "she")
PLACES = ("on the left", "on the right", "in the middle", "at the top", "at the bottom", "in the corner",
          "over there", "next to the door", "in the box", "on the table")
OTHER_COLOURS = ("black", "white", "grey", "brown", "pink", "golden", "silver", "dark", "pale", "bright")
OTHER_SHAPES = ("star", "line", "ring", "dot", "box", "ball", "heart", "arrow", "moon", "diamond", "oval", "rectangle")


def normalise(text: str) -> str:
    """Lower case, only ALPHABET's characters, single spaces: the spelling CTC learns."""
    text = re.sub(r"[^a-z' ]+", " ", text.lower().replace("’", "'"))
    return re.sub(r"\s+", " ", text).strip()


def common_words(count: int = COMMON_WORDS) -> list[str]:
    """The `count` most frequent English words that spell in ALPHABET (from `wordfreq` if installed; else the
    built-in vocabulary)."""
    try:
        from wordfreq import top_n_list
        words = top_n_list("en", count * 2)
    except ImportError:
        words = list(dict.fromkeys(SUBJECTS + DETERMINERS + ADJECTIVES + NOUNS + VERBS + TRANSITIVE + PREPOSITIONS + ADVERBS))
    found = [w for w in words if re.fullmatch(r"[a-z]+('[a-z]+)?", w) and (len(w) > 1 or w in ("a", "i"))]
    return found[:count]


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(rng: np.random.Generator) -> str:
    words = [_pick(rng, DETERMINERS)]
    if rng.random() < 0.6:
        words.append(_pick(rng, ADJECTIVES + tuple(COLOURS)))
    words.append(_pick(rng, NOUNS))
    phrase = " ".join(words)
    return re.sub(r"^a (?=[aeiou])", "an ", phrase)


def grammar_sentence(rng: np.random.Generator) -> str:
    kind = rng.random()
    subject = _noun_phrase(rng) if rng.random() < 0.7 else _pick(rng, SUBJECTS)
    plural = subject in ("i", "you", "we", "they")
    if kind < 0.35:
        verb = _pick(rng, VERBS)
        verb = verb[:-1] if plural and not verb.endswith("ies") else (verb[:-3] + "y" if plural else verb)
        tail = f" {_pick(rng, PREPOSITIONS)} {_noun_phrase(rng)}" if rng.random() < 0.6 else ""
        return f"{subject} {verb}{tail}" + (f" {_pick(rng, ADVERBS)}" if rng.random() < 0.3 else "")
    if kind < 0.7:
        verb = _pick(rng, TRANSITIVE)
        if plural:
            verb = verb[:-3] + "y" if verb.endswith("ies") else verb[:-2] if verb.endswith(("shes", "ches", "sses")) else verb[:-1]
        return f"{subject} {verb} {_noun_phrase(rng)}" + (f" {_pick(rng, PLACES)}" if rng.random() < 0.3 else "")
    if kind < 0.85:
        return f"{_noun_phrase(rng)} is {_pick(rng, ADJECTIVES + tuple(COLOURS))}"
    return f"where is {_noun_phrase(rng)}" if rng.random() < 0.5 else f"{_pick(rng, SUBJECTS)} can see {_noun_phrase(rng)}"


def world_like_sentence(rng: np.random.Generator) -> str:
    """The caption words in other combinations and orders: never exactly a caption."""
    colours, shapes = tuple(COLOURS), SHAPES
    where = _pick(rng, tuple("in the middle" if p == "middle" else f"on the {p}" for p in POSITIONS) + PLACES)
    kind = rng.random()
    if kind < 0.3:  # a world colour on something that is not a world shape
        colour = _pick(rng, colours)
        return f"{article(colour)} {colour} {_pick(rng, NOUNS + OTHER_SHAPES)} {where}"
    if kind < 0.55:  # a world shape of a colour the world does not have, or with another adjective
        colour = _pick(rng, OTHER_COLOURS + ADJECTIVES)
        return f"{article(colour)} {colour} {_pick(rng, shapes)} {where}"
    if kind < 0.75:
        return f"the {_pick(rng, shapes)} is {_pick(rng, colours)}"
    if kind < 0.9:
        return f"the {_pick(rng, colours)} {_pick(rng, shapes)} is {_pick(rng, PLACES + ('big', 'small', 'here'))}"
    return f"{_pick(rng, ('put', 'draw', 'show me', 'find', 'paint'))} the {_pick(rng, colours)} {_pick(rng, shapes + OTHER_SHAPES)}"


def word_run(rng: np.random.Generator, words: list[str]) -> str:
    return " ".join(_pick(rng, words) for _ in range(int(rng.integers(3, 9))))


SHARES = {"grammar": 0.4, "world_like": 0.25, "words": 0.3, "captions": 0.05}


def sentences(count: int, rng: np.random.Generator, words: list[str] | None = None, exclude: set[str] | None = None,
              max_characters: int = MAX_CHARACTERS) -> list[str]:
    """`count` different sentences (normalised, at most `max_characters`), none in `exclude`, mixed by SHARES."""
    words = words if words is not None else common_words()
    captions = [normalise(s["caption"]) for s in all_scenes()]
    exclude = set(exclude or ())
    kinds, weights = list(SHARES), np.array(list(SHARES.values()))
    found: dict[str, None] = {}
    tries = 0
    while len(found) < count:
        tries += 1
        if tries > 50 * count + 1000:
            raise RuntimeError(f"only {len(found)} different sentences in {tries} tries: ask for fewer than {count}")
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "grammar":
            text = grammar_sentence(rng)
        elif kind == "world_like":
            text = world_like_sentence(rng)
        elif kind == "words":
            text = word_run(rng, words)
        else:
            text = _pick(rng, captions)
        text = normalise(text)
        if kind != "captions" and text in captions:
            continue
        if text and len(text) <= max_characters and text not in exclude and text not in found:
            found[text] = None
    return list(found)


def write_corpus(out: str | Path, clips: int = 6000, test_clips: int = 200, held_out_engine: str | None = "auto",
                 strength: float = 1.0, seed: int = 0, voices=None) -> dict:
    """Speak `clips` sentences with the training voices into <out>/train, and `test_clips` other sentences with the
    held-out voices (<out>/test) and the held-out engine (<out>/test_engine); metadata.jsonl has `text`."""
    from world.build import speak_clips
    from world.voices import available_voices, split_voices

    out = Path(out)
    start = time.perf_counter()
    for part in ("train", "test", "test_engine"):
        shutil.rmtree(out / part, ignore_errors=True)
    split = split_voices(voices if voices is not None else available_voices(), held_out_engine)
    rng = np.random.default_rng([seed, 20])
    texts = sentences(clips + 2 * test_clips, rng)
    train_texts, test_texts = texts[:clips], texts[clips:]
    counts = {"train": len(speak_clips(train_texts, split["train"], out / "train", rng, strength=strength,
                                       max_seconds=None, extra=[{"text": t} for t in train_texts]))}
    for k, part, pool in ((0, "test", split["test_voices"]), (1, "test_engine", split["test_engine"])):
        part_texts = test_texts[k * test_clips : (k + 1) * test_clips] if pool else []
        counts[part] = len(speak_clips(part_texts, pool, out / part, np.random.default_rng([seed, 21 + k]), strength=strength,
                                       max_seconds=None, extra=[{"text": t} for t in part_texts])) if pool else 0
    manifest = {"clips": counts, "seed": seed, "strength": strength, "sentences": len(texts),
                "voices": {k: [v.key for v in vs] for k, vs in split.items() if k != "unused"},
                "seconds": round(time.perf_counter() - start, 1)}
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/world/speech")
    parser.add_argument("--clips", type=int, default=6000, help="training clips (one sentence each)")
    parser.add_argument("--test-clips", type=int, default=200, help="clips each for the held-out voices and the held-out engine")
    parser.add_argument("--held-out-engine", default="auto")
    parser.add_argument("--strength", type=float, default=1.0, help="microphone augmentation strength")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print", type=int, default=0, help="only print this many sentences")
    args = parser.parse_args(argv)
    if args.print:
        for text in sentences(args.print, np.random.default_rng(args.seed)):
            print(text)
        return {}
    manifest = write_corpus(args.out, args.clips, args.test_clips, None if args.held_out_engine == "none" else args.held_out_engine,
                            args.strength, args.seed)
    print(f"wrote {manifest['clips']} clips to {args.out} in {manifest['seconds']} s")
    return manifest


if __name__ == "__main__":
    main()
