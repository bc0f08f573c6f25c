"""world.voices: every installed engine speaks, its prosody controls work, failures name the package, and the
split keeps held-out engines, speakers, accents and variants out of training."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from world import voices as V
from world.voices import ENGINE_PACKAGES, ENGINES, Voice, available_voices, split_voices

TEXT = "a red circle on the left"


def f0(wave: np.ndarray, rate: int = 16_000) -> float:
    """Median F0 (Hz) over voiced 40 ms frames, by autocorrelation: enough to tell a pitch change."""
    n, found = int(0.04 * rate), []
    for start in range(0, len(wave) - n, n // 4):
        x = wave[start : start + n] - wave[start : start + n].mean()
        if np.sum(x**2) < 0.1 * n * np.mean(wave**2):
            continue
        ac = np.correlate(x, x, "full")[n - 1 :]
        low, high = rate // 450, rate // 60
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.5 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found)) if found else 0.0


def voices_of(engine: str) -> list[Voice]:
    found = available_voices([engine])
    if not found:
        pytest.skip(f"{engine} is not installed here ({ENGINE_PACKAGES[engine]})")
    return found


def check_speech(wave: np.ndarray, text: str = TEXT) -> None:
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.all(np.isfinite(wave))
    seconds = len(wave) / 16_000
    assert 0.5 < seconds < 0.5 + 0.25 * len(text.split()) * 2, seconds  # ~0.25 s a word, slow speech twice that
    assert np.abs(wave).max() > 0.02
    frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)  # 20 ms frames: speech is loud in many of them
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 0.1 * np.sqrt(np.mean(wave**2))
    assert loud.mean() > 0.3


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_speaks_16k_mono_float32(engine):
    voice = voices_of(engine)[0]
    check_speech(voice.speak(TEXT))
    check_speech(voice.speak(TEXT, np.random.default_rng(0)))


@pytest.mark.parametrize("engine", ENGINES)
def test_many_texts_at_once_match_one_at_a_time(engine):
    voice = voices_of(engine)[0]
    texts = [TEXT, "a blue square in the middle", 'a "green" cross on the right']
    prosodies = [voice.draw_prosody(np.random.default_rng(seed)) for seed in range(3)]
    many = voice.synthesize_many(texts, prosodies)
    assert len(many) == 3
    for text, prosody, wave in zip(texts, prosodies, many):
        check_speech(wave, text)
        if engine != "piper":  # piper's noise differs from call to call
            assert np.array_equal(wave, voice.synthesize(text, **prosody))
    assert voice.synthesize_many([]) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_rate_changes_the_duration(engine):
    candidates = voices_of(engine)
    picked = [candidates[0]] + [v for v in candidates if v.option("kind") == "hts"][:1]  # festival's HTS voice differs
    for voice in picked:
        slow = voice.synthesize(TEXT, rate=0.7)
        fast = voice.synthesize(TEXT, rate=1.45)
        assert len(slow) > 1.4 * len(fast), (voice.key, len(slow), len(fast))


@pytest.mark.parametrize("engine", ["espeak-ng", "espeak-ng-l2", "mbrola", "flite", "festival", "pico", "rhvoice", "sam"])
def test_pitch_changes_the_pitch(engine):
    voice = next((v for v in voices_of(engine) if v.option("kind") != "hts"), None)
    if voice is None:
        pytest.skip(f"no {engine} voice that takes a pitch")
    low, high = f0(voice.synthesize(TEXT, pitch=0.85)), f0(voice.synthesize(TEXT, pitch=1.35))
    assert high > 1.3 * low > 0, (voice.key, low, high)  # asked for 1.59 times


def test_prosody_is_drawn_from_the_generator():
    for engine in ENGINES:
        found = available_voices([engine])
        if found:
            voice = found[0]
            assert voice.draw_prosody(np.random.default_rng(3)) == voice.draw_prosody(np.random.default_rng(3))
            draws = [voice.draw_prosody(np.random.default_rng(seed))["rate"] for seed in range(50)]
            assert min(draws) < 0.85 and max(draws) > 1.25  # wide ranges


def test_espeak_has_many_accents_and_variants():
    found = voices_of("espeak-ng")
    accents = {t for v in found for t in v.traits if "accent:" in t}
    variants = {t for v in found for t in v.traits if "variant:" in t}
    assert len(accents) >= 6 and len(variants) >= 50
    assert len(found) == len(accents) * len(variants)
    assert len({v.key for v in available_voices()}) == len(available_voices())  # keys are unique


def test_mbrola_has_foreign_accented_english_voices_and_holds_some_accents_out(monkeypatch, tmp_path):
    # every database installed (made-up files), so the test does not depend on what this machine has
    for database in V.MBROLA_VOICES.values():
        (tmp_path / database).mkdir()
        (tmp_path / database / database).write_bytes(b"")
    monkeypatch.setattr(V, "MBROLA_DIRS", (str(tmp_path),))
    monkeypatch.setattr(V.shutil, "which", lambda name: f"/usr/bin/{name}")
    found = V.mbrola_voices()
    accented = [v for v in found if v.name.endswith("-en")]
    assert len(accented) >= 12 and len({v.traits for v in found}) == len(found)  # one speaker each
    split = split_voices(found, held_out_engine=None)
    trained, held = ({v.name for v in split[part] if v.name.endswith("-en")} for part in ("train", "test_voices"))
    assert len(trained) >= 10 and len(held) >= 2
    languages = lambda names: {re.sub(r"^mb-([a-z]+)\d-en$", r"\1", n) for n in names}
    assert languages(held) - languages(trained)  # an accent that no training voice has


def test_a_foreign_accented_mbrola_voice_speaks_every_word_of_a_caption():
    voice = next((v for v in voices_of("mbrola") if v.name.endswith("-en")), None)
    if voice is None:
        pytest.skip("no accented mbrola database installed (apt-get install mbrola-de1, Debian contrib and non-free)")
    short, long = voice.synthesize("a red circle"), voice.synthesize("a red circle on the left")
    assert len(long) > 1.3 * len(short) > 0  # "on the left" is spoken, not mapped to silence


# Six captions that hold every word of the world (each colour, shape and position at least once).
EVERY_WORD = [f"a{'n' * (c == 'orange')} {c} {s} {p}" for c, s, p in zip(
    ("red", "orange", "yellow", "green", "blue", "purple"), ("circle", "square", "triangle", "cross") * 2,
    ("on the left", "in the middle", "on the right") * 2)]


def test_english_through_every_other_phoneme_table_keeps_every_word():
    tables = sorted({v.name.partition("+")[0] for v in voices_of("espeak-ng-l2")})
    assert len(tables) >= 0.9 * len(V.L2_TABLES)
    english = [len(Voice("espeak-ng", "en-us").synthesize(text)) for text in EVERY_WORD]
    for table in tables:
        ratios = [len(Voice("espeak-ng-l2", table).synthesize(text)) / n for text, n in zip(EVERY_WORD, english)]
        assert min(ratios) >= 0.85, (table, [round(r, 2) for r in ratios])  # a dropped word shortens a caption by a fifth or more


def test_a_phoneme_a_table_lacks_gets_a_stand_in_instead_of_cutting_the_word():
    from world.espeak import espeak

    voices_of("espeak-ng-l2")
    text = "an orange triangle in the middle"
    english = len(espeak(text, "en-us"))
    raw = "[[" + "".join(V.en_us_phonemes(text)) + "]]"  # en-us's phonemes, unmapped
    cut = [t for t in ("fr-fr", "de", "ru", "it", "ja") if len(espeak(raw, t)) < 0.85 * english]
    assert cut  # without stand-ins some tables drop phonemes and the rest of their words ("circle" → "s")
    for table in cut:
        assert len(Voice("espeak-ng-l2", table).synthesize(text)) >= 0.85 * english, table


def test_unheard_engines_come_only_when_named_and_never_into_a_split():
    from world.voices import UNHEARD_ENGINES

    assert set(UNHEARD_ENGINES) <= set(ENGINES)
    assert not any(v.engine in UNHEARD_ENGINES for v in available_voices())
    named = available_voices(list(UNHEARD_ENGINES))
    if not named:
        pytest.skip("neither RHVoice nor samtts is installed here")
    assert {v.engine for v in named} <= set(UNHEARD_ENGINES)
    split = split_voices(available_voices())
    assert not any(v.engine in UNHEARD_ENGINES for part in split.values() for v in part)


def test_a_missing_engine_names_the_voice_and_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    for voice in (Voice("espeak-ng", "en-us", package="apt-get install espeak-ng"),
                  Voice("festival", "kal_diphone", package="apt-get install festival festvox-kallpc16k")):
        with pytest.raises(RuntimeError, match=re.escape(voice.key)) as error:
            voice.speak(TEXT)
        assert voice.package in str(error.value)


def test_an_unknown_voice_fails_clearly():
    for voice in (Voice("espeak-ng", "zz-nosuch", package="apt-get install espeak-ng"),
                  Voice("espeak-ng", "en-us+nosuchvariant", package="apt-get install espeak-ng"),
                  Voice("flite", "no_such_voice", package="apt-get install flite"),
                  Voice("festival", "no_such_voice", package="apt-get install festival")):
        if not available_voices([voice.engine]):
            continue
        with pytest.raises(RuntimeError, match=re.escape(voice.key)):
            voice.speak(TEXT)


def test_a_machine_with_only_espeak_still_works(monkeypatch):
    real_which = V.shutil.which
    monkeypatch.setattr(V.shutil, "which", lambda name, *a, **k: real_which(name) if name == "espeak-ng" else None)
    monkeypatch.setitem(sys.modules, "piper", None)  # import fails, as when it is not installed
    V._available.cache_clear()
    try:
        found = available_voices()
        if real_which("espeak-ng") is None:
            assert found == []
            return
        assert {v.engine for v in found} == {"espeak-ng", "espeak-ng-l2"}
        split = split_voices(found)
        assert split["test_engine"] == [] and split["train"] and split["test_voices"]
    finally:
        V._available.cache_clear()


# --- the split, on a made-up registry (independent of what is installed) -------------------------------------

def fake_registry() -> list[Voice]:
    espeak = [Voice("espeak-ng", f"{a}+{v}", (f"espeak-ng/accent:{a}", f"espeak-ng/variant:{v}"))
              for a in ("en-us", "en-gb", "en-029", "en-gb-x-gbcwmd") for v in ("m1", "f2", "f4", "m5", "klatt3")]
    others = [
        Voice("mbrola", "mb-us1", ("speaker:mbrola-us1",)), Voice("mbrola", "mb-us2", ("speaker:mbrola-us2",)),
        Voice("flite", "kal16", ("speaker:cmu-kal",)), Voice("flite", "slt", ("speaker:cmu-slt",)),
        Voice("flite", "rms", ("speaker:cmu-rms",)), Voice("flite", "awb", ("speaker:cmu-awb",)),
        Voice("festival", "kal_diphone", ("speaker:cmu-kal",)), Voice("festival", "ked_diphone", ("speaker:cmu-ked",)),
        Voice("festival", "cmu_us_slt_arctic_hts", ("speaker:cmu-slt",)),
        Voice("festival", "us2_mbrola", ("speaker:mbrola-us2",)),
        Voice("pico", "en-US", ("speaker:pico-en-US",)), Voice("pico", "en-GB", ("speaker:pico-en-GB",)),
        Voice("piper", "joe", ("speaker:piper-joe",)),
    ]
    l2 = [Voice("espeak-ng-l2", f"{t}+{v}", (f"espeak-ng/table:{t}", f"espeak-ng/variant:{v}")) for t in ("de", "pl") for v in ("m1", "f4")]
    return espeak + others + l2


def check_split(split: dict, voices: list[Voice], engine: str | None) -> None:
    train, test_voices, test_engine = split["train"], split["test_voices"], split["test_engine"]
    assert sorted(v.key for part in split.values() for v in part) == sorted(v.key for v in voices)  # each once
    assert all(v.engine == engine for v in test_engine) and len(test_engine) == sum(v.engine == engine for v in voices)
    assert all(v.engine != engine for v in train + test_voices)
    heard = {t for v in train for t in v.traits}
    for voice in test_voices + test_engine:  # nothing a test voice is made of was heard in training
        assert not heard & set(voice.traits), voice.key
    for voice in test_voices:
        assert all(t in V.HELD_OUT_TRAITS for t in voice.traits)


def test_split_holds_out_piper_and_voices_of_every_trained_engine():
    voices = fake_registry()
    split = split_voices(voices)
    check_split(split, voices, "piper")
    assert [v.key for v in split["test_engine"]] == ["piper/joe"]
    assert {v.engine for v in split["test_voices"]} == {"espeak-ng", "espeak-ng-l2", "mbrola", "flite", "festival", "pico"}
    assert {v.name for v in split["test_voices"] if v.engine == "espeak-ng-l2"} == {"pl+f4"}  # held-out table and variant
    assert {v.name for v in split["train"] if v.engine == "espeak-ng-l2"} == {"de+m1"}
    espeak_test = {v.name for v in split["test_voices"] if v.engine == "espeak-ng"}
    assert espeak_test == {f"{a}+{v}" for a in ("en-029", "en-gb-x-gbcwmd") for v in ("f4", "m5", "klatt3")}
    assert "espeak-ng/en-us+m1" in {v.key for v in split["train"]}
    assert "espeak-ng/en-029+m1" in {v.key for v in split["unused"]}  # held-out accent, trained variant
    assert {"festival/us2_mbrola", "mbrola/mb-us2"} <= {v.key for v in split["test_voices"]}  # one speaker, two engines


def test_holding_out_an_engine_keeps_its_speakers_out_of_training():
    voices = fake_registry()
    split = split_voices(voices, held_out_engine="festival")
    check_split(split, voices, "festival")
    train = {v.key for v in split["train"]}
    assert "flite/slt" not in train and "flite/kal16" not in train  # festival speaks with their speakers
    assert "flite/awb" in train and "piper/joe" in train


def test_without_piper_the_held_out_engine_falls_back():
    voices = [v for v in fake_registry() if v.engine != "piper"]
    assert split_voices(voices)["test_engine"][0].engine == "pico"
    assert split_voices(voices, held_out_engine=None)["test_engine"] == []


def test_the_installed_registry_splits_cleanly():
    voices = available_voices()
    if not voices:
        pytest.skip(f"no speech engine installed ({ENGINE_PACKAGES['espeak-ng']})")
    split = split_voices(voices)
    check_split(split, voices, V.default_held_out_engine(voices))
    assert split["train"] and split["test_voices"]


def test_dectalk_is_not_an_engine():
    """DECtalk's binaries come from a leaked commercial source: the project neither ships nor trains on them."""
    assert "dectalk" not in ENGINES
    assert all(v.engine != "dectalk" for v in available_voices())
