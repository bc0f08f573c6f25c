"""The cascade baseline: what a user would try before an audio encoder, measured beside it.

For each window of a sound, the scorer's CLAP names the nearest caption of its vocabulary (`caption_for`), and stock
Stable Diffusion text-to-image (diffusers' `StableDiffusionPipeline`, built on the audio pipeline's own components:
nothing is loaded twice) draws that caption. `python -m evaluation --mode cascade|both` and `world.evaluate` use it;
the images come back as the audio pipeline's do, each window's record carrying the caption that was drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from hearing.audio import DEFAULT_MAX_SECONDS

if TYPE_CHECKING:  # torch and diffusers load when a cascade is built, not when `python -m evaluation --help` reads MODES
    from generate.pipeline import AudioToImagePipeline, AudioToImagePipelineOutput

# How an evaluation run turns a sound into the UNet's condition: the audio encoder's states ("direct"), or this baseline.
MODES = ("direct", "cascade")


@runtime_checkable
class CaptionBank(Protocol):
    """What the cascade needs of a scorer (scoring.AudioImageScorer is one): the caption of its vocabulary nearest a sound."""

    def caption_for(self, audio_16k_mono: np.ndarray) -> str: ...


class CascadeBaseline:
    """`CascadeBaseline(pipe, scorer)(audio, ...)`: sound → CLAP's caption → text → image, called like the audio pipeline."""

    def __init__(self, pipe: AudioToImagePipeline, scorer: CaptionBank):
        from diffusers import StableDiffusionPipeline

        if not isinstance(scorer, CaptionBank):
            raise ValueError("the cascade needs a scorer with `caption_for` (its vocabulary is the caption bank), e.g. scoring.AudioImageScorer")
        if pipe.text_encoder is None or pipe.tokenizer is None:
            raise ValueError("the cascade draws with the base model's text encoder and tokenizer: build the pipeline with "
                             "`AudioToImagePipeline.from_base_model(..., text_mixing=True)` (or load a folder saved with them)")
        self.pipe, self.scorer = pipe, scorer
        # The scheduler is registered after construction: given to StableDiffusionPipeline's __init__, a config with
        # steps_offset 0 (the world's) is rewritten in place, which would change the shared scheduler of `pipe` too.
        self.text_to_image = StableDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                                                     scheduler=None, safety_checker=None, feature_extractor=None,
                                                     requires_safety_checker=False)
        self.text_to_image.register_modules(scheduler=pipe.scheduler)
        self.text_to_image.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))

    def __call__(self, audio, sampling_rate: int | None = None, num_images_per_prompt: int = 1, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, height: int | None = None, width: int | None = None, generator=None,
                 window_policy: str = "first", output_type: str = "pil", max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
                 max_windows: int | None = None, batch_size: int | None = None) -> AudioToImagePipelineOutput:
        """The images of every window of `audio` (the audio pipeline's arguments of the same names, its defaults too);
        `batch_size` is accepted for the same call and unused: the captions are drawn in one batch, as text-to-image does."""
        import torch

        from generate.pipeline import AudioToImagePipelineOutput

        pipe = self.pipe
        waves, windows = pipe.load_windows(audio, sampling_rate, window_policy, max_audio_seconds, max_windows)
        captions = [self.scorer.caption_for(wave) for wave in waves]
        with torch.no_grad():
            images = self.text_to_image(
                captions, negative_prompt=[""] * len(captions), num_images_per_prompt=num_images_per_prompt,
                num_inference_steps=pipe.sampling.steps if num_inference_steps is None else num_inference_steps,
                guidance_scale=pipe.sampling.guidance if guidance_scale is None else guidance_scale,
                height=height, width=width, generator=generator, output_type=output_type,
            ).images
        records = [{**windows[i // num_images_per_prompt], "caption": captions[i // num_images_per_prompt]}
                   for i in range(len(waves) * num_images_per_prompt)]
        return AudioToImagePipelineOutput(images=images, scores=None, windows=records)
