"""What a diffusers user expects of a pipeline's call, on the tiny components: a condition encoded once and reused
(`encode_prompt` → `prompt_embeds` / `negative_prompt_embeds`, as diffusers' generic pipeline tests check), and
`cross_attention_kwargs` reaching the UNet's attention (a LoRA's strength)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hearing.audio import SAMPLE_RATE
from tests.conftest import build_pipeline, tone

FAST = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline()


def drawn(pipe, seed: int = 0, **kwargs) -> np.ndarray:
    return pipe(generator=torch.Generator().manual_seed(seed), **FAST, **kwargs).images


@pytest.mark.parametrize("guidance, images", [(3.0, 1), (3.0, 2), (1.0, 2)])
def test_a_sound_encoded_once_draws_what_the_sound_draws(pipe, guidance, images):
    """diffusers' test_encode_prompt_works_in_isolation: the call with the states encode_prompt gave (with the call's own
    argument names) equals the call with the sound; with guidance off there is no negative."""
    sounds = [tone(1.0, 440.0), tone(2.0, 660.0)]
    states, negative = pipe.encode_prompt(sounds, num_images_per_prompt=1, do_classifier_free_guidance=guidance > 1,
                                          sampling_rate=SAMPLE_RATE)
    assert states.shape[0] == 2 and (negative is None) == (guidance <= 1)
    expected = drawn(pipe, audio=sounds, sampling_rate=SAMPLE_RATE, guidance_scale=guidance, num_images_per_prompt=images)
    again = drawn(pipe, prompt_embeds=states, negative_prompt_embeds=negative, guidance_scale=guidance, num_images_per_prompt=images)
    np.testing.assert_allclose(again, expected, atol=1e-5)  # float noise of other batch shapes only (diffusers allows 1e-4)
    assert not np.allclose(drawn(pipe, prompt_embeds=states.flip(0), guidance_scale=guidance), expected[::images], atol=1e-3)


def test_the_negative_defaults_to_the_stored_empty_caption_and_repeats_per_image(pipe):
    states, negative = pipe.encode_prompt(tone(1.0), sampling_rate=SAMPLE_RATE)
    np.testing.assert_allclose(drawn(pipe, prompt_embeds=states), drawn(pipe, prompt_embeds=states, negative_prompt_embeds=negative), atol=1e-5)
    repeated, repeated_negative = pipe.encode_prompt(prompt_embeds=states, num_images_per_prompt=3)
    assert repeated.shape[0] == 3 and torch.equal(repeated[2], states[0].to(repeated.dtype)) and repeated_negative.shape == repeated.shape


@pytest.mark.parametrize("kwargs, message", [
    ({"audio": "x.wav"}, "either `audio` or `prompt_embeds`"),
    ({"prompt": "an oil painting"}, "need the sound itself"),
    ({"negative_prompt_embeds": torch.zeros(2, 5, 32)}, "must have the shape of `prompt_embeds`"),
])
def test_prompt_embeds_misuse_is_named_before_anything_runs(pipe, kwargs, message):
    states, _ = pipe.encode_prompt(tone(1.0), sampling_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match=message):
        pipe(prompt_embeds=states, **kwargs)
    with pytest.raises(ValueError, match="`negative_prompt_embeds` go with `prompt_embeds`"):
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, negative_prompt_embeds=states)
    with pytest.raises(ValueError, match=r"must be \(windows, positions, "):
        pipe(prompt_embeds=states[0])


def test_cross_attention_kwargs_set_a_loras_strength():
    """A LoRA on the UNet's attention (peft, through diffusers' add_adapter): `{"scale": 0}` draws as without it, the
    default scale 1 draws otherwise, and 0.5 in between."""
    from peft import LoraConfig

    pipe = build_pipeline()
    without = drawn(pipe, audio=tone(1.0), sampling_rate=SAMPLE_RATE)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    full = drawn(pipe, audio=tone(1.0), sampling_rate=SAMPLE_RATE)
    off = drawn(pipe, audio=tone(1.0), sampling_rate=SAMPLE_RATE, cross_attention_kwargs={"scale": 0.0})
    half = drawn(pipe, audio=tone(1.0), sampling_rate=SAMPLE_RATE, cross_attention_kwargs={"scale": 0.5})
    np.testing.assert_allclose(off, without, atol=1e-5)
    assert not np.allclose(full, without, atol=1e-3) and not np.allclose(half, full, atol=1e-3) and not np.allclose(half, without, atol=1e-3)
