"""Live mode: the listener (generate/live.py), the app's streaming handler with tiny models, and a real browser whose
fake microphone plays a shipped example to the world's models, judged by the world's model-free checker."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests (there is no network)

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app
from hearing.audio import SAMPLE_RATE, resample, time_stretch
from generate import live
from generate.model_sets import WORLD_MODELS
from tests.conftest import BROWSER_ARGS, CHROMIUM, build_pipeline, needs_chromium, serving

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "world"
WINDOW = 3 * SAMPLE_RATE
SKIPPED = {"__type__": "update"}  # gr.skip(): the component keeps what it shows
needs_world = pytest.mark.skipif(not (WORLD_MODELS / "pipeline" / "model_index.json").is_file(),
                                 reason="models/world not built (python -m world.rebuild)")
# On the shared 2-core machine a live picture of the world comes 1 s of sound after the last; the first right one is
# allowed this long from Record (the page's stream must open, the fake microphone start, the sentence be heard).
FIRST_RIGHT_PICTURE_S = 20.0


def tone(seconds: float, level_dbfs: float = -20.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (level_dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def chunks(wave: np.ndarray, rate: int, seconds: float = 0.25):
    step = int(seconds * rate)
    for start in range(0, wave.shape[0], step):
        yield rate, wave[start : start + step]


# --- the listener ---------------------------------------------------------------------------------------------


def test_rms_is_measured_in_dbfs():
    assert live.rms_dbfs(tone(1.0, -20.0)) == pytest.approx(-20.0, abs=0.1)
    assert live.rms_dbfs(np.zeros(100, np.float32)) == float("-inf") and live.rms_dbfs(np.zeros(0)) == float("-inf")


def test_a_picture_each_interval_of_sound_and_none_in_silence():
    listener = live.LiveListener(window=WINDOW, interval_s=1.0)
    sound = np.concatenate([tone(2.0), np.zeros(3 * SAMPLE_RATE, np.float32), tone(1.0)])
    due = [listener.hear(rate, chunk) is not None for rate, chunk in chunks(sound, SAMPLE_RATE)]
    # 24 chunks of 0.25 s: a decision each 4; sound, sound, silence ×3, sound
    assert [i for i, d in enumerate(due) if d] == [3, 7, 23]
    assert listener.pictures == 3 and listener.heard == sound.shape[0]
    assert listener.hear(SAMPLE_RATE, np.zeros(4000, np.float32)) is None and listener.state == "waiting"
    quiet = live.LiveListener(window=WINDOW, interval_s=1.0, silence_dbfs=-10.0)  # the threshold decides what silence is
    assert quiet.hear(SAMPLE_RATE, tone(1.0, -20.0)) is None and quiet.state == "silence"


def test_the_window_starts_where_the_current_sound_began_at_any_rate():
    """A sentence after a pause is heard from 0.1 s before its first sound, padded with silence after; a sound longer
    than the window through its latest window. The microphone's own rate is resampled."""
    pause, words = np.zeros(2 * SAMPLE_RATE, np.float32), tone(1.5, -30.0)
    heard = live.current_sound(np.concatenate([tone(1.0), pause, words]), WINDOW)
    assert heard.shape == (WINDOW,)
    start = int(live.ONSET_MARGIN_S * SAMPLE_RATE)
    assert not heard[: start - 10].any() and heard[start + 10 : start + words.shape[0] - 10].any()
    assert not heard[start + words.shape[0] + 10 :].any()  # after what was heard: silence, not a repeat
    long = tone(5.0) * np.linspace(0.5, 1.0, 5 * SAMPLE_RATE, dtype=np.float32)
    np.testing.assert_array_equal(live.current_sound(long, WINDOW), long[-WINDOW:])
    request = tone(3.6, -30.0)  # a little longer than the window: heard whole from its onset, sped up to fit
    request[: SAMPLE_RATE // 2] *= 0.5  # its first words quieter: they must still be in the window
    heard = live.current_sound(np.concatenate([tone(1.0), pause, request]), WINDOW)
    whole = np.concatenate([np.zeros(int(live.ONSET_MARGIN_S * SAMPLE_RATE), np.float32), request])
    np.testing.assert_allclose(heard, time_stretch(whole, whole.shape[0] / WINDOW)[:WINDOW], atol=1e-6)
    assert heard.shape == (WINDOW,) and np.abs(heard[-SAMPLE_RATE // 10 :]).max() > 0  # its end is in the window too

    listener = live.LiveListener(window=WINDOW, interval_s=1.0)
    drawn = [w for rate, chunk in chunks(tone(2.0, rate=48_000), 48_000) if (w := listener.hear(rate, chunk)) is not None]
    assert len(drawn) == 2 and listener.heard == 2 * SAMPLE_RATE


# --- the painter: drawing off the stream's thread ---------------------------------------------------------------


def test_the_painter_draws_the_newest_window_of_each_session_and_carries_errors():
    started, release, drawn = threading.Event(), threading.Event(), []

    def draw(name):
        drawn.append(name)
        if name == "a1":
            started.set()
            assert release.wait(30)
        if name == "bad":
            raise ValueError("no sound")
        return name.upper()

    painter = live.LivePainter(draw, max_sessions=2)
    painter.submit("a", 1, "a1")
    assert started.wait(30) and painter.busy("a") and painter.latest("a") is None  # submit returned while a1 is drawn
    painter.submit("a", 2, "a2")
    painter.submit("a", 3, "a3")  # replaces a2, which never gets drawn
    painter.submit("b", 1, "bad")
    release.set()
    assert painter.wait(timeout=30)
    assert drawn == ["a1", "a3", "bad"]
    assert painter.latest("a").value == "A3" and painter.latest("a").number == 3 and painter.latest("a", after=3) is None
    assert isinstance(painter.latest("b").error, ValueError)
    painter.submit("c", 1, "c1")  # a third session: the oldest picture (a's) is dropped, memory stays bounded
    assert painter.wait("c", timeout=30) and painter.latest("a") is None and painter.latest("c").value == "C1"
    painter.forget("c")
    assert painter.latest("c") is None


# --- the app's handler, tiny models -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_handlers():
    return app.make_live_handler(build_pipeline(text_mixing=True), app.Settings(default_steps=2, live_steps=2, live_interval=1.0))


def test_the_handler_draws_keeps_the_picture_in_silence_and_stops_cleanly(live_handlers):
    """Each second of sound a window is drawn, and its picture reaches the page with the next chunk; silence keeps the
    last picture; Stop ends the stream."""
    listen, stop_listening = live_handlers
    rate = 48_000
    sound = np.concatenate([tone(2.0, rate=rate), np.zeros(2 * rate, np.float32)])
    listener, pictures, statuses = None, [], []
    for _, chunk in chunks((sound * 32767).astype(np.int16), rate, 0.5):  # int16, as Gradio's numpy audio arrives
        picture, status, listener = listen((rate, chunk), listener, 2, 1.0)
        assert listen.painter.wait(listener.session, timeout=60)
        pictures.append(picture)
        statuses.append(status)
    drawn = [i for i, p in enumerate(pictures) if isinstance(p, Image.Image)]
    assert drawn == [2, 4] and all(pictures[i] == SKIPPED for i in range(len(pictures)) if i not in drawn)
    assert pictures[2].size == (app.SHOWN_SIZE, app.SHOWN_SIZE)  # the tiny pipeline's 64 px, enlarged
    assert statuses[2].startswith("Picture 1 in") and statuses[4].startswith("Picture 2 in") and "2 step(s)" in statuses[4]
    assert statuses[5].startswith("Silence: the last picture stays") and statuses[7].startswith("Silence")
    picture, status, state = stop_listening(listener)
    assert picture == SKIPPED and status.startswith("Stopped: 2 picture(s) drawn") and state is None


def test_the_handler_returns_while_a_picture_is_drawn_and_stop_shows_the_last_one():
    """The stream's handler never waits for a drawing (Gradio keeps only the newest chunk while a handler runs, so a
    handler that drew in place lost the microphone's sound): with the UNet held, a chunk whose window is due returns at
    once, the next chunks are heard, and Stop hands the page the last window's picture."""
    pipe, held, release = build_pipeline(text_mixing=True), threading.Event(), threading.Event()
    listen, stop_listening = app.make_live_handler(pipe, app.Settings(live_steps=2, live_interval=1.0))

    def hold_the_unet(module, args):
        held.set()
        assert release.wait(60)

    handle = pipe.unet.register_forward_pre_hook(hold_the_unet)
    try:
        picture, status, listener = listen((SAMPLE_RATE, tone(1.0)), None, 2, 1.0)
        assert held.wait(30) and listen.painter.busy(listener.session)  # drawing, and the handler has returned
        assert picture == SKIPPED
        for _ in range(4):  # the microphone goes on; every chunk is heard while the picture is drawn
            picture, _, listener = listen((SAMPLE_RATE, tone(0.25)), listener, 2, 1.0)
            assert picture == SKIPPED
        assert listener.heard == 2 * SAMPLE_RATE and listener.pictures == 2
        release.set()
        picture, status, state = stop_listening(listener)
    finally:
        release.set()
        handle.remove()
    assert isinstance(picture, Image.Image) and status.startswith("Stopped: 2 picture(s) drawn") and state is None


def test_the_same_sound_gives_the_same_picture_and_bad_settings_one_line(live_handlers):
    listen, stop_listening = live_handlers

    def picture_of(wave):
        _, _, listener = listen((SAMPLE_RATE, wave), None, 2, 1.0)
        return stop_listening(listener)[0]

    first, again = picture_of(tone(1.0)), picture_of(tone(1.0))
    assert isinstance(first, Image.Image) and np.array_equal(np.asarray(first), np.asarray(again))  # one noise for all
    for steps, interval, message in ((0, 1.0, "Live steps 0: must be a whole number from 1"),
                                     (2, float("nan"), "Seconds between pictures nan: must be a number from 0.25 to 10")):
        with pytest.raises(gr.Error) as caught:
            listen((SAMPLE_RATE, tone(1.0)), None, steps, interval)
        assert message in caught.value.message and "\n" not in caught.value.message


def test_a_stop_ends_a_live_picture_at_its_next_step():
    """SIGTERM during a live picture of 4 steps (the UNet's first pass asks for the stop): it ends after that step and
    its client hears why; a chunk after the stop is refused the same way."""
    stop, pipe = app.ServerStop(), build_pipeline(text_mixing=True)
    listen, _ = app.make_live_handler(pipe, app.Settings(live_interval=1.0), stop)
    passes = []

    def first_pass_asks_for_a_stop(module, args):  # the live pipeline shares this UNet
        passes.append(1)
        stop.request()

    handle = pipe.unet.register_forward_pre_hook(first_pass_asks_for_a_stop)
    try:
        _, _, listener = listen((SAMPLE_RATE, tone(1.0)), None, 4, 1.0)
        assert listen.painter.wait(listener.session, timeout=60)
    finally:
        handle.remove()
    assert len(passes) == 1
    error = listen.painter.latest(listener.session).error
    assert isinstance(error, gr.Error) and "shutting down" in error.message
    with pytest.raises(gr.Error, match="shutting down"):
        listen((SAMPLE_RATE, tone(1.0)), listener, 4, 1.0)


def test_live_draws_with_its_own_scheduler_on_the_same_models():
    pipe = build_pipeline(text_mixing=True)
    own = app.live_pipeline(pipe)
    assert own.unet is pipe.unet and own.audio_encoder is pipe.audio_encoder and own.scheduler is not pipe.scheduler


def test_the_live_settings_have_ranges_and_the_world_draws_live_with_its_cheapest_steps(monkeypatch):
    for name in ("AUDIO2IMAGE_MODELS", "AUDIO2IMAGE_PIPELINE"):
        monkeypatch.delenv(name, raising=False)
    from generate.model_sets import WORLD_SAMPLING

    settings = app.Settings.from_args(["--no-scorer"])
    assert (settings.live_steps, settings.live_interval, settings.live_silence_db) == (WORLD_SAMPLING.live, 1.0, live.SILENCE_DBFS)
    assert app.Settings.from_args(["--live-steps", "4", "--live-interval", "0.5"]).live_steps == 4
    for flags, message in ((["--live-interval", "0"], "--live-interval 0.0: must be a number from 0.25 to 10"),
                           (["--live-steps", "0"], "--live-steps 0: must be a whole number"),
                           (["--live-silence-db", "20"], "--live-silence-db 20.0: must be a number from -100 to 0")):
        with pytest.raises(ValueError, match=message):
            app.Settings.from_args(flags)


# --- a real browser, a fake microphone, the world's models ------------------------------------------------------


def microphone_file(example: Path, folder: Path) -> Path:
    """What Chromium's fake microphone plays, over and over: the shipped example between pauses (1 s before, 1.5 s
    after), as a person says a sentence, waits and says it again; 16-bit 48 kHz, as a microphone records."""
    wave, rate = sf.read(example, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    wave = np.concatenate([np.zeros(rate, np.float32), wave, np.zeros(int(1.5 * rate), np.float32)])
    path = folder / f"{example.stem}_mic.wav"
    sf.write(path, resample(wave, rate, 48_000), 48_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def world_served():
    """The app on the shipped world's models, served in this process."""
    settings = app.Settings.from_args(["--device", "cpu", "--no-scorer"])
    with serving(app.create_app(settings)) as url:
        yield url


def live_pictures(url: str, sound: Path, want: dict, seconds: float) -> tuple[float | None, list[dict], str]:
    """Open the page in a browser whose microphone plays `sound`, press Record in the Live section, and read every new
    picture until one shows `want` (or `seconds` pass): (seconds from Record to that picture or None, the checker's
    verdict on each picture, the live status), then press Stop."""
    from playwright.sync_api import sync_playwright

    from world.checker import check_image

    switches = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={sound}"]
    verdicts, found = [], None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS + switches)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.goto(url)
            page.get_by_text("Live: the picture follows the microphone").click()
            page.locator("#live-audio button.record-button").click()
            started, shown = time.monotonic(), None
            while time.monotonic() - started < seconds and found is None:
                source = page.locator("#live-picture img").first.get_attribute("src", timeout=500) if page.locator("#live-picture img").count() else None
                if source and source != shown:
                    shown = source
                    picture = Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB")
                    factor = picture.width // 32  # the world's 32 px picture, enlarged pixel for pixel
                    verdict = check_image(np.asarray(picture)[::factor, ::factor])
                    verdicts.append(verdict)
                    if verdict == want:
                        found = time.monotonic() - started
                time.sleep(0.2)
            status = page.locator("#live-status").inner_text()
            page.locator("#live-audio button", has_text="Stop").first.click()
            page.wait_for_function("document.querySelector('#live-status').innerText.startsWith('Stopped')", timeout=10_000)
            status = page.locator("#live-status").inner_text()
        finally:
            browser.close()
    return found, verdicts, status


@needs_chromium
@needs_world
def test_browser_live_picture_follows_the_fake_microphone(world_served, tmp_path):
    """Chromium's fake microphone plays a shipped example: within seconds the page's live picture shows its caption (the
    world's model-free checker says so); another browser whose microphone plays another example gets that one's."""
    results = {}
    for name in ("red_circle_left", "blue_square_middle"):
        colour, shape, position = name.split("_")
        want = {"colour": colour, "shape": shape, "position": position}
        found, verdicts, status = live_pictures(world_served, microphone_file(EXAMPLES / f"{name}.wav", tmp_path), want, FIRST_RIGHT_PICTURE_S)
        print(f"{name}: right after {found} s; {len(verdicts)} picture(s): {verdicts}; {status}")
        assert found is not None, (name, verdicts)
        assert status.startswith("Stopped:"), status
        results[name] = found
    assert all(seconds < FIRST_RIGHT_PICTURE_S for seconds in results.values())
