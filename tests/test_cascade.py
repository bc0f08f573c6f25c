"""The cascade baseline (evaluation/cascade.py) on the tiny components: CLAP's caption for each window, drawn by
diffusers' own text-to-image pipeline on the audio pipeline's components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.cascade import CascadeBaseline
from hearing.audio import SAMPLE_RATE
from tests.conftest import CaptionScorer, build_pipeline, tone

FAST = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


@pytest.fixture(scope="module")
def text_pipe():
    return build_pipeline(text_mixing=True)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_cascade_draws_the_heard_caption_as_stock_text_to_image_does(text_pipe):
    from diffusers import StableDiffusionPipeline

    scorer = CaptionScorer("a dog barking")
    out = CascadeBaseline(text_pipe, scorer)(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(3), **FAST)
    assert scorer.heard == [text_pipe.audio_encoder.window_samples] and out.windows[0]["caption"] == "a dog barking"
    stock = StableDiffusionPipeline(vae=text_pipe.vae, text_encoder=text_pipe.text_encoder, tokenizer=text_pipe.tokenizer,
                                    unet=text_pipe.unet, scheduler=text_pipe.scheduler, safety_checker=None, feature_extractor=None,
                                    requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    expected = stock("a dog barking", negative_prompt="", generator=seeded(3), guidance_scale=text_pipe.sampling.guidance, **FAST).images
    np.testing.assert_allclose(out.images, expected, atol=1e-5)
    direct = text_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(3), **FAST).images
    assert not np.allclose(direct, expected, atol=1e-3)  # the direct path hears the sound itself


def test_every_window_gets_its_own_caption_and_images():
    """A sound of two windows heard whole (`window_policy="all"`), two images each: four images, each window's record
    carrying the caption CLAP heard in it; the components are the audio pipeline's own, not copies."""
    pipe = build_pipeline(text_mixing=True)
    heard = iter(["rain", "a dog barking"])

    class TwoCaptions(CaptionScorer):
        def caption_for(self, audio_16k_mono):
            self.heard.append(len(audio_16k_mono))
            return next(heard)

    cascade = CascadeBaseline(pipe, TwoCaptions(""))
    assert cascade.text_to_image.unet is pipe.unet and cascade.text_to_image.text_encoder is pipe.text_encoder
    sound = tone(1.6 * pipe.audio_encoder.window_samples / SAMPLE_RATE)
    out = cascade(sound, sampling_rate=SAMPLE_RATE, window_policy="all", num_images_per_prompt=2, generator=seeded(0), **FAST)
    assert len(out.images) == 4 and [w["caption"] for w in out.windows] == ["rain", "rain", "a dog barking", "a dog barking"]
    assert [w["window"] for w in out.windows] == [0, 0, 1, 1]


def test_the_cascade_needs_a_caption_bank_and_the_text_encoder():
    with pytest.raises(ValueError, match="needs a scorer with `caption_for`"):
        CascadeBaseline(build_pipeline(text_mixing=True), object())
    with pytest.raises(ValueError, match="text encoder and tokenizer"):
        CascadeBaseline(build_pipeline(), CaptionScorer("rain"))


def test_building_the_cascade_leaves_the_shared_scheduler_as_it_was():
    """StableDiffusionPipeline rewrites a scheduler config with steps_offset 0 (the world's) when given it: the cascade's
    must not change the audio pipeline's scheduler, which it shares."""
    pipe = build_pipeline(text_mixing=True)
    pipe.scheduler = type(pipe.scheduler).from_config({**pipe.scheduler.config, "steps_offset": 0})
    before = dict(pipe.scheduler.config)
    cascade = CascadeBaseline(pipe, CaptionScorer("rain"))
    assert cascade.text_to_image.scheduler is pipe.scheduler and dict(pipe.scheduler.config) == before
