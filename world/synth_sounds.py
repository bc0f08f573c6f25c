"""Procedural recordings of the sound classes that simple physics describes: a new source on every call.

What a held-out source sounds like is learned from how many sources the ears heard, not from how many recordings
(world/README.md, "What limits the ears on sounds"), and the packages hold 1-7 sources a class. A recipe here draws
its own source each time: a siren's sweep and speed, a clock's rate and timbre, an engine's firing rate and body, a
bird's syllables. `world.sounds.write_clips` makes a share of a class's training clips from them (`--synthetic-share`),
through the same augmentation chain as the recordings; every held-out clip stays a real recording.

Seventeen classes have a recipe (SYNTHESIZABLE); the voices of animals and people (a dog, a cow, laughter...) do not.
Each recipe is `recipe(rng, samples) -> wave` at 16 kHz; `synthesize(name, rng)` picks a length and normalises the peak.
"""

from __future__ import annotations

import numpy as np

from hearing.audio import SAMPLE_RATE
from world.microphone import band_limit, make_noise

SECONDS = (1.5, 4.0)  # a synthetic recording's length (the ears' window is about 4 s)


# --- building blocks ---------------------------------------------------------------------------------------------------

def _tone(frequency_hz: np.ndarray, harmonics: list[float]) -> np.ndarray:
    """A periodic sound following `frequency_hz` sample by sample, with the given harmonic amplitudes."""
    phase = 2 * np.pi * np.cumsum(frequency_hz) / SAMPLE_RATE
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics) if a)


def _band(wave: np.ndarray, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    return band_limit(wave, low_hz, high_hz, order=2)


def _decaying(samples: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(samples) / SAMPLE_RATE / decay_s)


def _burst(rng: np.random.Generator, seconds: float, decay_s: float, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """A short noise burst (a click, a clap, a thud) of the given band, dying away with `decay_s`."""
    samples = max(int(seconds * SAMPLE_RATE), 8)
    return _band(rng.standard_normal(samples), low_hz, high_hz) * _decaying(samples, decay_s)


def _ping(frequency_hz: float, seconds: float, decay_s: float, glide: float = 1.0) -> np.ndarray:
    """A damped resonance (a drop, a tick), its pitch gliding by `glide` over its length."""
    samples = max(int(seconds * SAMPLE_RATE), 8)
    return _tone(np.geomspace(frequency_hz, frequency_hz * glide, samples), [1.0]) * _decaying(samples, decay_s)


def _mix(*waves: np.ndarray) -> np.ndarray:
    """Waves of different lengths added, from their starts."""
    out = np.zeros(max(len(w) for w in waves))
    for w in waves:
        out[: len(w)] += w
    return out


def _place(samples: int, times_s, event) -> np.ndarray:
    """Overlap-add events at the given times; `event(i)` gives the i-th event's wave."""
    out = np.zeros(samples)
    for i, t in enumerate(times_s):
        start = int(t * SAMPLE_RATE)
        if 0 <= start < samples:
            e = event(i)[: samples - start]
            out[start : start + len(e)] += e
    return out


def _poisson_times(rng: np.random.Generator, rate_hz: float, seconds: float) -> np.ndarray:
    return np.sort(rng.uniform(0, seconds, rng.poisson(rate_hz * seconds)))


def _regular_times(rng: np.random.Generator, rate_hz: float, seconds: float, jitter: float) -> np.ndarray:
    period = 1 / rate_hz
    times = np.arange(rng.uniform(0, period), seconds, period)
    return np.clip(times + rng.normal(0, jitter * period, len(times)), 0, None)


def _slow(rng: np.random.Generator, samples: int, rate_hz: float, depth: float) -> np.ndarray:
    """A smooth random gain around 1 (gusts, a rolling rumble), changing about `rate_hz` times a second."""
    points = max(int(samples / SAMPLE_RATE * rate_hz) + 2, 2)
    return 1 + depth * np.interp(np.arange(samples), np.linspace(0, samples, points), rng.uniform(-1, 1, points))


def _flyby(samples: int, rng: np.random.Generator) -> np.ndarray:
    """A pass: loudness swelling to its closest point and fading, or steady."""
    if rng.random() < 0.3:
        return np.ones(samples)
    t = np.linspace(-1, 1, samples) - rng.uniform(-0.6, 0.6)
    return 1 / (1 + (t / rng.uniform(0.2, 0.8)) ** 2)


def _doppler(samples: int, rng: np.random.Generator, shift: float) -> np.ndarray:
    """A frequency factor falling from 1 + shift to 1 - shift as the source passes."""
    t = np.linspace(-1, 1, samples) - rng.uniform(-0.5, 0.5)
    return 1 - shift * np.tanh(t / rng.uniform(0.1, 0.5))


# --- the recipes ---------------------------------------------------------------------------------------------------------

def siren(rng: np.random.Generator, n: int) -> np.ndarray:
    low = rng.uniform(450, 1000)
    high = low * rng.uniform(1.4, 2.2)
    t = np.arange(n) / SAMPLE_RATE
    kind = rng.integers(3)
    if kind == 0:  # wail
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(1.5, 5) + rng.uniform(0, 2 * np.pi))
    elif kind == 1:  # yelp
        sweep = (t / rng.uniform(0.12, 0.4) + rng.uniform()) % 1.0
    else:  # two-tone
        sweep = ((t / rng.uniform(0.4, 1.2) + rng.uniform()) % 1.0 > 0.5).astype(float)
    harmonics = [1.0] + [rng.uniform(0, 0.6) / k for k in range(2, 6)]
    return _tone(low + (high - low) * sweep * _doppler(n, rng, rng.uniform(0, 0.05)), harmonics)


def clock_tick(rng: np.random.Generator, n: int) -> np.ndarray:
    rate, pitch = rng.uniform(1, 5), rng.uniform(1500, 6000)
    tock = rng.uniform(0.7, 1.0)
    decay = rng.uniform(0.002, 0.015)

    def tick(i: int) -> np.ndarray:
        f = pitch * (tock if i % 2 else 1.0)
        return _mix(_ping(f, 0.06, decay), 0.5 * _ping(f * rng.uniform(1.3, 2.7), 0.06, decay * 0.7),
                    0.3 * _burst(rng, 0.01, 0.002, 1000, None))

    return _place(n, _regular_times(rng, rate, n / SAMPLE_RATE, 0.01), tick) + 0.01 * make_noise("pink", n, rng)


def rain(rng: np.random.Generator, n: int) -> np.ndarray:
    bed = _band(make_noise(("white", "pink")[rng.integers(2)], n, rng), rng.uniform(200, 1500), rng.uniform(3000, 8000))
    drops = _place(n, _poisson_times(rng, rng.uniform(100, 1500), n / SAMPLE_RATE),
                   lambda i: rng.lognormal(0, 0.7) * _ping(rng.uniform(1000, 6000), 0.02, rng.uniform(0.001, 0.006)))
    return bed / (np.std(bed) + 1e-9) * rng.uniform(0.3, 1.0) + drops / (np.std(drops) + 1e-9)


def water_drops(rng: np.random.Generator, n: int) -> np.ndarray:
    rate = rng.uniform(0.8, 6)
    times = _regular_times(rng, rate, n / SAMPLE_RATE, rng.uniform(0.02, 0.4))
    base = rng.uniform(500, 2000)
    return _place(n, times, lambda i: rng.uniform(0.5, 1) * _mix(
        _ping(base * rng.uniform(0.8, 1.25), rng.uniform(0.04, 0.12), rng.uniform(0.01, 0.04), rng.uniform(1.2, 2.2)),
        0.2 * _burst(rng, 0.004, 0.001, 2000, None))) + 0.005 * make_noise("pink", n, rng)


def wind(rng: np.random.Generator, n: int) -> np.ndarray:
    body = _band(make_noise(("pink", "brown")[rng.integers(2)], n, rng), rng.uniform(20, 150), rng.uniform(400, 2500))
    gusts = np.clip(_slow(rng, n, rng.uniform(0.3, 1.5), rng.uniform(0.3, 0.9)), 0.05, None)
    out = body / (np.std(body) + 1e-9) * gusts
    if rng.random() < 0.4:  # a whistle through a gap
        whistle = _band(rng.standard_normal(n), *(lambda f: (f * 0.95, f * 1.05))(rng.uniform(300, 1500)))
        out += rng.uniform(0.2, 0.8) * whistle / (np.std(whistle) + 1e-9) * gusts**2
    return out


def thunderstorm(rng: np.random.Generator, n: int) -> np.ndarray:
    start = int(rng.uniform(0, 0.3) * n)
    rumble = _band(make_noise("brown", n, rng), None, rng.uniform(150, 600)) * np.clip(_slow(rng, n, rng.uniform(2, 8), 0.8), 0, None)
    envelope = np.zeros(n)
    t = np.arange(n - start) / SAMPLE_RATE
    envelope[start:] = (1 - np.exp(-t / rng.uniform(0.02, 0.3))) * np.exp(-t / rng.uniform(0.8, 4))
    out = rumble / (np.std(rumble) + 1e-9) * envelope
    if rng.random() < 0.6:  # the crack of a near strike
        crack = _burst(rng, 0.3, rng.uniform(0.03, 0.15), None, rng.uniform(2000, 7000))
        out[start : start + len(crack)] += rng.uniform(1, 4) * crack[: n - start] / (np.std(crack) + 1e-9)
    if rng.random() < 0.5:  # rain under it
        out += rng.uniform(0.05, 0.3) * rain(rng, n) / 3
    return out


def crackling_fire(rng: np.random.Generator, n: int) -> np.ndarray:
    roar = _band(make_noise("brown", n, rng), None, rng.uniform(300, 1500))
    crackles = _place(n, _poisson_times(rng, rng.uniform(5, 40), n / SAMPLE_RATE),
                      lambda i: min(rng.pareto(1.5) + 0.2, 8) * _burst(rng, 0.02, rng.uniform(0.0005, 0.004), rng.uniform(500, 3000), None))
    return rng.uniform(0.1, 0.6) * roar / (np.std(roar) + 1e-9) + crackles / (np.std(crackles) + 1e-9)


def engine(rng: np.random.Generator, n: int) -> np.ndarray:
    firing = rng.uniform(15, 60) * np.geomspace(1, rng.uniform(0.7, 2.5), n) * _slow(rng, n, 3, 0.03)
    body = _tone(firing, [1.0] + [rng.uniform(0, 1) / k ** 0.5 for k in range(2, 24)])
    body = _band(body * _slow(rng, n, 20, 0.3), None, rng.uniform(400, 3000))
    hiss = _band(make_noise("pink", n, rng), 200, rng.uniform(1000, 5000))
    return body / (np.std(body) + 1e-9) + rng.uniform(0.05, 0.4) * hiss / (np.std(hiss) + 1e-9)


def car_horn(rng: np.random.Generator, n: int) -> np.ndarray:
    low = rng.uniform(280, 520)
    chord = [low, low * rng.uniform(1.15, 1.4)][: 1 + int(rng.random() < 0.8)]
    harmonics = [1 / k if k % 2 else rng.uniform(0, 0.3) / k for k in range(1, 12)]
    seconds = n / SAMPLE_RATE
    on = np.zeros(n)
    t = rng.uniform(0, 0.3)
    for _ in range(rng.integers(1, 4)):
        length = rng.uniform(0.2, 1.5)
        on[int(t * SAMPLE_RATE) : int(min(t + length, seconds) * SAMPLE_RATE)] = 1
        t += length + rng.uniform(0.08, 0.4)
    on = np.convolve(on, np.ones(160) / 160, mode="same")  # 10 ms edges
    tone = sum(_tone(np.full(n, f), harmonics) for f in chord)
    return _band(tone, 150, rng.uniform(2500, 6000)) * on


def helicopter(rng: np.random.Generator, n: int) -> np.ndarray:
    slaps = _place(n, _regular_times(rng, rng.uniform(8, 22), n / SAMPLE_RATE, 0.02),
                   lambda i: _burst(rng, 0.08, rng.uniform(0.01, 0.04), None, rng.uniform(300, 1500)))
    turbine = _tone(np.full(n, rng.uniform(1500, 5000)) * _doppler(n, rng, 0.03), [1.0, 0.3])
    wash = _band(make_noise("pink", n, rng), 100, 4000)
    out = (slaps / (np.std(slaps) + 1e-9) + rng.uniform(0.02, 0.2) * turbine / (np.std(turbine) + 1e-9)
           + rng.uniform(0.2, 0.6) * wash / (np.std(wash) + 1e-9))
    return out * _flyby(n, rng)


def airplane(rng: np.random.Generator, n: int) -> np.ndarray:
    flyby = _flyby(n, rng)
    if rng.random() < 0.6:  # a jet: a roar whose brightness follows its closeness, a whine falling as it passes
        roar = make_noise(("pink", "brown")[rng.integers(2)], n, rng)
        bright = _band(roar, 500, None)
        out = _band(roar, None, rng.uniform(800, 3000)) + flyby * rng.uniform(0.2, 1) * bright / (np.std(bright) + 1e-9) * np.std(roar)
        whine = _tone(rng.uniform(1000, 5000) * _doppler(n, rng, rng.uniform(0.03, 0.12)), [1.0])
        out = out / (np.std(out) + 1e-9) + rng.uniform(0, 0.3) * whine
    else:  # a propeller: a buzz at the blades' rate, falling as it passes
        buzz = _tone(rng.uniform(50, 160) * _doppler(n, rng, rng.uniform(0.03, 0.1)), [1 / k for k in range(1, 16)])
        out = buzz / (np.std(buzz) + 1e-9) + rng.uniform(0.1, 0.5) * _band(make_noise("pink", n, rng), 100, 3000) * 3
    return out * flyby


def train(rng: np.random.Generator, n: int) -> np.ndarray:
    seconds = n / SAMPLE_RATE
    rumble = _band(make_noise("brown", n, rng), None, rng.uniform(200, 800))
    out = rumble / (np.std(rumble) + 1e-9) * rng.uniform(0.3, 1)
    gap, period = rng.uniform(0.07, 0.2), rng.uniform(0.35, 1.2)
    joints = _regular_times(rng, 1 / period, seconds, 0.01)
    clacks = _place(n, np.concatenate([joints, joints + gap]),
                    lambda i: _burst(rng, 0.1, rng.uniform(0.01, 0.04), 100, rng.uniform(1000, 4000)))
    out += rng.uniform(0.5, 2) * clacks / (np.std(clacks) + 1e-9)
    if rng.random() < 0.4:  # steam: chuffs
        chuffs = _place(n, _regular_times(rng, rng.uniform(2, 6), seconds, 0.03), lambda i: _burst(rng, 0.25, 0.08, 300, 5000))
        out += chuffs / (np.std(chuffs) + 1e-9)
    if rng.random() < 0.4:  # its horn: a chord of two or three tones
        base = rng.uniform(200, 400)
        chord = sum(_tone(np.full(n, base * r), [1, 0.5, 0.3, 0.2]) for r in (1, 1.26, 1.5)[: rng.integers(2, 4)])
        on = np.zeros(n)
        start = int(rng.uniform(0, max(seconds - 1, 0.1)) * SAMPLE_RATE)
        on[start : start + int(rng.uniform(0.6, 2) * SAMPLE_RATE)] = 1
        out += rng.uniform(0.5, 2) * chord / (np.std(chord) + 1e-9) * np.convolve(on, np.ones(400) / 400, mode="same")
    return out


def clapping(rng: np.random.Generator, n: int) -> np.ndarray:
    seconds = n / SAMPLE_RATE
    people = 1 if rng.random() < 0.5 else int(rng.integers(3, 40))
    times = np.concatenate([_regular_times(rng, rng.uniform(1.5, 6), seconds, 0.05) for _ in range(people)])
    return _place(n, times, lambda i: rng.uniform(0.5, 1) * _burst(rng, 0.05, rng.uniform(0.004, 0.015),
                                                                   rng.uniform(400, 1200), rng.uniform(2500, 6000)))


def footsteps(rng: np.random.Generator, n: int) -> np.ndarray:
    rate = rng.uniform(1.2, 3)
    ground = rng.integers(3)  # hard floor, gravel, grass
    level = [1.0, rng.uniform(0.6, 1.0)]

    def step(i: int) -> np.ndarray:
        thud = _burst(rng, 0.12, rng.uniform(0.015, 0.05), None, rng.uniform(200, 800))
        if ground == 0:
            texture = _burst(rng, 0.05, 0.005, 1000, 6000) * rng.uniform(0.1, 0.6)
        else:
            grains = _place(int(0.2 * SAMPLE_RATE), _poisson_times(rng, rng.uniform(60, 300), 0.15),
                            lambda k: _burst(rng, 0.01, 0.001, 1500 if ground == 1 else 600, None))
            texture = grains * rng.uniform(0.1, 0.5) / (np.std(grains) + 1e-9) * np.std(thud)
        return level[i % 2] * _mix(thud, texture) / (np.std(thud) + 1e-9)

    return _place(n, _regular_times(rng, rate, n / SAMPLE_RATE, 0.05), step)


def insects(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # a bee or a fly: wings beating, wandering in pitch and loudness
        wings = rng.uniform(120, 350) * _slow(rng, n, rng.uniform(1, 6), rng.uniform(0.03, 0.15))
        return _tone(wings, [1 / k ** 0.7 for k in range(1, 20)]) * _slow(rng, n, 2, 0.5)
    if kind == 1:  # crickets: pulses of a high tone, in chirps
        carrier = _tone(np.full(n, rng.uniform(3000, 6000)), [1.0])
        pulses, per_chirp = rng.uniform(15, 40), int(rng.integers(2, 6))
        t = np.arange(n) / SAMPLE_RATE
        pulse_on = (np.sin(2 * np.pi * pulses * t) > 0).astype(float)
        chirp_period = per_chirp / pulses + rng.uniform(0.1, 0.6)
        chirp_on = ((t + rng.uniform(0, chirp_period)) % chirp_period) < per_chirp / pulses
        return carrier * np.convolve(pulse_on * chirp_on, np.ones(40) / 40, mode="same")
    band = _band(rng.standard_normal(n), rng.uniform(3000, 5000), rng.uniform(6000, 7800))  # cicadas
    return band * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(40, 200) * np.arange(n) / SAMPLE_RATE))


def chirping_birds(rng: np.random.Generator, n: int) -> np.ndarray:
    seconds = n / SAMPLE_RATE
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        low, high = sorted(rng.uniform(1800, 7500, 2))
        syllable_s = rng.uniform(0.03, 0.15)
        shape = rng.integers(3)  # rising, falling, up and down

        def syllable(i: int) -> np.ndarray:
            samples = int(syllable_s * rng.uniform(0.7, 1.3) * SAMPLE_RATE)
            x = np.linspace(0, 1, samples)
            sweep = (x, 1 - x, np.sin(np.pi * x))[shape]
            f = low + (high - low) * sweep
            return _tone(f, [1.0, rng.uniform(0, 0.3)]) * np.sin(np.pi * x) ** 2

        times = np.concatenate([t0 + np.arange(int(rng.integers(2, 8))) * syllable_s * rng.uniform(1.1, 2)
                                for t0 in _poisson_times(rng, rng.uniform(0.5, 2.5), seconds)] or [np.zeros(0)])
        out += rng.uniform(0.3, 1) * _place(n, times, syllable)
    return out


def frog(rng: np.random.Generator, n: int) -> np.ndarray:
    carrier, pulse_rate = rng.uniform(200, 1500), rng.uniform(15, 90)
    croak_s, croaks = rng.uniform(0.1, 0.5), rng.uniform(0.8, 3)

    def croak(i: int) -> np.ndarray:
        samples = int(croak_s * SAMPLE_RATE)
        t = np.arange(samples) / SAMPLE_RATE
        pulses = np.maximum(np.sin(2 * np.pi * pulse_rate * t), 0) ** 2
        return _tone(np.full(samples, carrier), [1.0, 0.6, 0.4, 0.2]) * pulses * np.sin(np.pi * t / croak_s)

    return _place(n, _regular_times(rng, croaks, n / SAMPLE_RATE, 0.15), croak)


RECIPES = {"siren": siren, "clock_tick": clock_tick, "rain": rain, "water_drops": water_drops, "wind": wind,
           "thunderstorm": thunderstorm, "crackling_fire": crackling_fire, "engine": engine, "car_horn": car_horn,
           "helicopter": helicopter, "airplane": airplane, "train": train, "clapping": clapping,
           "footsteps": footsteps, "insects": insects, "chirping_birds": chirping_birds, "frog": frog}
SYNTHESIZABLE = tuple(RECIPES)


def synthesize(name: str, rng: np.random.Generator, seconds: float | None = None) -> np.ndarray:
    """A new synthetic recording of the sound class `name` (one of SYNTHESIZABLE), mono 16 kHz float32, peak 0.9."""
    if name not in RECIPES:
        raise ValueError(f"no recipe for the sound class {name!r}; these have one: {', '.join(SYNTHESIZABLE)}")
    samples = int((seconds if seconds is not None else rng.uniform(*SECONDS)) * SAMPLE_RATE)
    wave = np.nan_to_num(np.asarray(RECIPES[name](rng, samples), dtype=np.float64))
    peak = float(np.abs(wave).max())
    return (wave / peak * 0.9 if peak > 0 else wave).astype(np.float32)
