"""diffusers' own generic pipeline tests (`PipelineTesterMixin`, the suite every diffusers pipeline passes) run on
AudioToImagePipeline with the tiny components. diffusers' wheel does not ship its tests, so this runs where a diffusers
checkout is given: AUDIO2IMAGE_DIFFUSERS_TESTS=/path/to/diffusers (its tests/ need `parameterized` and `requests_mock`).
Measured here on diffusers' main of 2026-12 (0.40.0.dev0) with diffusers 0.42.1 installed: 22 passed, 11 need a GPU."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch

from architectures import tiny_models
from generate.pipeline import AudioToImagePipeline
from hearing.text_states import encode_captions

CHECKOUT = os.environ.get("AUDIO2IMAGE_DIFFUSERS_TESTS")


def diffusers_tester_mixin():
    """PipelineTesterMixin from the checkout's tests/, imported as the package `diffusers_tests` (this project's tests
    are a package named `tests` too)."""
    root = Path(CHECKOUT) / "tests"
    if "diffusers_tests" not in sys.modules:
        spec = importlib.util.spec_from_file_location("diffusers_tests", root / "__init__.py", submodule_search_locations=[str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["diffusers_tests"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("diffusers_tests.pipelines.test_pipelines_common").PipelineTesterMixin


if not CHECKOUT:
    pytest.skip("diffusers' generic pipeline tests: set AUDIO2IMAGE_DIFFUSERS_TESTS to a diffusers checkout", allow_module_level=True)
pytest.importorskip("parameterized")
pytest.importorskip("requests_mock")


class AudioToImagePipelineGenericTests(diffusers_tester_mixin(), unittest.TestCase):
    pipeline_class = AudioToImagePipeline
    params = frozenset(["audio", "sampling_rate", "height", "width", "guidance_scale", "prompt_embeds", "negative_prompt_embeds",
                        "cross_attention_kwargs"])
    batch_params = frozenset(["audio"])
    image_params = frozenset()
    image_latents_params = frozenset()
    callback_cfg_params = frozenset()
    test_xformers_attention = False

    def get_dummy_components(self):
        torch.manual_seed(0)
        text_encoder, tokenizer = tiny_models.tiny_text_encoder(), tiny_models.tiny_tokenizer()
        empty = encode_captions([""], text_encoder, tokenizer)[0]
        return {"vae": tiny_models.tiny_vae(), "audio_encoder": tiny_models.tiny_audio_encoder(empty_embedding=empty),
                "feature_extractor": tiny_models.feature_extractor(), "unet": tiny_models.tiny_unet(),
                "scheduler": tiny_models.sd21_scheduler(), "text_encoder": None, "tokenizer": None}

    def get_dummy_inputs(self, device, seed=0):
        t = np.arange(16_000) / 16_000
        return {"audio": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), "sampling_rate": 16_000,
                "generator": torch.Generator("cpu").manual_seed(seed), "num_inference_steps": 2, "guidance_scale": 6.0, "output_type": "np"}

    def test_encode_prompt_works_in_isolation(self):
        """diffusers' version keeps the components named like a text encoder; this pipeline's prompt encoder is its audio
        encoder. The same check: encode_prompt on a pipeline holding only the encoder, with the call's own arguments,
        then the call without the encoder on what it gave, equals the whole call."""
        components = self.get_dummy_components()
        encoding = self.pipeline_class(**{k: v if k in ("audio_encoder", "feature_extractor") else None for k, v in components.items()})
        inputs = self.get_dummy_inputs("cpu")
        names = inspect.signature(encoding.encode_prompt).parameters
        embeds, negative = encoding.encode_prompt(**{k: inputs.pop(k) for k in list(inputs) if k in names}, device=torch.device("cpu"),
                                                  do_classifier_free_guidance=inputs["guidance_scale"] > 1)
        drawing = self.pipeline_class(**{**components, "audio_encoder": None, "feature_extractor": None})
        drawing.set_progress_bar_config(disable=True)
        alone = drawing(prompt_embeds=embeds, negative_prompt_embeds=negative, **inputs).images
        whole = self.pipeline_class(**components)
        whole.set_progress_bar_config(disable=True)
        np.testing.assert_allclose(alone, whole(**self.get_dummy_inputs("cpu")).images, atol=1e-4, rtol=1e-4)
