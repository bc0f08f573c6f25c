"""Audio → image with Stable Diffusion 2.1: the audio prompt encoder takes the place of the CLIP text encoder.

The pipeline follows diffusers' `StableDiffusionPipeline` step by step and reuses its building blocks
(`retrieve_timesteps`, `prepare_latents`, `prepare_extra_step_kwargs`, `VaeImageProcessor`); what differs:

- the condition comes from sound: each audio window → `AudioPromptEncoder` → (1 + tokens, hidden) states in
  CLIP's space, fed to the UNet's cross-attention as `prompt_embeds`;
- classifier-free guidance uses the CLIP encoding of "" that the encoder stores (what SD was trained with
  as its unconditional input), so no text encoder is needed;
- a long sound is heard through windows (`window_policy`), a short one is repeat-padded;
- optional words (`prompt`) are appended to the audio states (see `encode_prompt`);
- optional ranking: `best_of` candidates per image, kept by a scorer (`score_images(audio, images)`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Union, runtime_checkable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline, retrieve_timesteps
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor

from hearing.device import resolve_device_and_dtype
from hearing.audio import (DEFAULT_MAX_SECONDS, SAMPLE_RATE, WINDOW_POLICIES, AudioError, TooManyWindows, load_audio, split_windows,
                           squeezed_span)
from hearing.encoder import AudioPromptEncoder, load_audio_encoder
from hearing.model_ids import DEFAULT_BASE_MODEL, ORIGINAL_CHECKPOINT
from hearing.text_states import encode_captions
from generate.limits import side_for_model
from generate.model_sets import Sampling, sampling_for

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

@runtime_checkable
class Scorer(Protocol):
    """What the pipeline needs of a scorer to rank candidates (scoring.AudioImageScorer is one): higher is better."""

    def score_images(self, audio_16k_mono: np.ndarray, images: list[PIL.Image.Image]) -> torch.Tensor: ...


AudioInput = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor, tuple]

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from generate.pipeline import AudioToImagePipeline
        >>> pipe = AudioToImagePipeline.from_base_model()  # SD 2.1 + the public audio encoder, on cuda/mps/cpu
        >>> out = pipe("dog_bark.wav", num_images_per_prompt=2, generator=torch.Generator().manual_seed(0))
        >>> out.images[0].save("bark.png")
        >>> pipe("rain.wav", prompt="as an oil painting").images[0]          # audio plus words
        >>> pipe("street.wav", window_policy="all").windows                   # one image per 6 s window
        ```
"""


@dataclass
class AudioToImagePipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            The images, in order: per audio, per window, `num_images_per_prompt` each (best first when ranked).
        scores (`torch.Tensor`, *optional*):
            The scorer's score of each image (higher is better), when a scorer was given.
        windows (`list[dict]`):
            Per image, the part of the sound it shows: `audio` (index in the batch), `window` (index among that
            sound's windows), `num_windows`, `start_s` / `end_s` (seconds), `repeated` (a clip shorter than the
            window, repeat-padded to it).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    scores: torch.Tensor | None = None
    windows: list[dict] | None = None


class AudioToImagePipeline(DiffusionPipeline, StableDiffusionMixin):
    r"""
    Pipeline for audio-to-image generation with Stable Diffusion 2.1, conditioned on a sound.

    This model inherits from [`DiffusionPipeline`] (saving, loading, `to`, `enable_model_cpu_offload`,
    `enable_attention_slicing`, ...) and [`StableDiffusionMixin`] (`enable_vae_slicing`, FreeU, ...).

    Args:
        vae ([`AutoencoderKL`]):
            Decodes the latents into images.
        audio_encoder ([`~hearing.encoder.AudioPromptEncoder`]):
            Turns a window of 16 kHz sound into CLIP-like prompt states `(1 + num_audio_tokens, hidden)`, and
            stores the CLIP encoding of "" used as the unconditional input of classifier-free guidance.
        feature_extractor ([`~transformers.SeamlessM4TFeatureExtractor`]):
            The w2v-BERT 2.0 filterbank features of the sound.
        unet ([`UNet2DConditionModel`]):
            The SD 2.1 denoiser; its `cross_attention_dim` must equal the encoder's hidden size.
        scheduler ([`SchedulerMixin`]):
            DPM-Solver++ by default (`from_base_model`): good images in 20-25 steps.
        text_encoder ([`~transformers.CLIPTextModel`], *optional*):
            The base model's CLIP text encoder, only for mixing words into the audio (`prompt=`).
        tokenizer ([`~transformers.CLIPTokenizer`], *optional*):
            Its tokenizer.
    """

    model_cpu_offload_seq = "text_encoder->audio_encoder->unet->vae"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    # diffusers' own building blocks, used as they are: they need only `vae_scale_factor` and `scheduler`.
    prepare_latents = StableDiffusionPipeline.prepare_latents
    prepare_extra_step_kwargs = StableDiffusionPipeline.prepare_extra_step_kwargs

    def __init__(
        self,
        vae: AutoencoderKL,
        audio_encoder: AudioPromptEncoder,
        feature_extractor: SeamlessM4TFeatureExtractor,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        text_encoder: CLIPTextModel | None = None,
        tokenizer: CLIPTokenizer | None = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, audio_encoder=audio_encoder, feature_extractor=feature_extractor, unet=unet, scheduler=scheduler,
            text_encoder=text_encoder, tokenizer=tokenizer,
        )
        self._check_components()
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    def _check_components(self) -> None:
        """Models that cannot work together fail here, at assembly, not deep inside the UNet."""
        unet, encoder, text_encoder = getattr(self, "unet", None), getattr(self, "audio_encoder", None), getattr(self, "text_encoder", None)
        if unet is None:
            return
        dim = unet.config.cross_attention_dim
        if encoder is not None and encoder.config.hidden_size != dim:
            raise ValueError(
                f"the audio encoder gives {encoder.config.hidden_size}-dim states but the UNet reads {dim}-dim ones: "
                f"the encoder was trained for another base model. Use an encoder trained against this base model's "
                f"text encoder (SD 2.1: 1024), or the base model it was trained for."
            )
        if text_encoder is not None and text_encoder.config.hidden_size != dim:
            raise ValueError(
                f"the text encoder gives {text_encoder.config.hidden_size}-dim states but the UNet reads {dim}-dim ones: "
                "load the text encoder and tokenizer of the same base model as the UNet."
            )
        if (text_encoder is None) != (getattr(self, "tokenizer", None) is None):
            raise ValueError("text mixing needs both `text_encoder` and `tokenizer` (or neither)")

    # ------------------------------------------------------------------------------------------------------------
    # Assembly
    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_base_model(
        cls,
        base_model: str | os.PathLike = DEFAULT_BASE_MODEL,
        audio_encoder: str | os.PathLike | AudioPromptEncoder = ORIGINAL_CHECKPOINT,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        text_mixing: bool = False,
        num_audio_tokens: int | None = None,
        **kwargs,
    ) -> "AudioToImagePipeline":
        r"""
        Assemble the pipeline from an SD 2.1 base model (Hub id or local diffusers folder) and an audio encoder.

        Loads `vae`, `unet` and the scheduler config from `base_model` (as a [`DPMSolverMultistepScheduler`], i.e.
        DPM-Solver++, or a few-step base's own sampler: `generate.model_sets.sampling_for`), the encoder with `load_audio_encoder` (our checkpoint, or the original public
        `Wav2Vec2BertModel` layout with `num_audio_tokens`, default 47), and the feature extractor. When the
        encoder does not store the empty-caption encoding (the original layout), it is computed once from the
        base model's text encoder, which is then dropped unless `text_mixing=True` keeps it for `prompt=`.

        `dtype`/`device` default to fp16 on CUDA/MPS, fp32 on CPU (see `resolve_device_and_dtype`). Other
        keyword arguments (`cache_dir`, `local_files_only`, `token`, `revision`, ...) go to every `from_pretrained`.
        """
        device, dtype = resolve_device_and_dtype(device, dtype)

        def load(what: str, loader: Callable[[], Any], source) -> Any:
            try:
                return loader()
            except OSError as error:
                raise FileNotFoundError(
                    f"cannot load the {what} from {str(source)!r}: {error}\nGive a Hub id or a local folder of a diffusers "
                    f"Stable Diffusion 2.1 pipeline (model_index.json with unet/, vae/, scheduler/, text_encoder/, tokenizer/), "
                    f"e.g. {DEFAULT_BASE_MODEL!r}."
                ) from error

        base = str(base_model)
        vae = load("VAE", lambda: AutoencoderKL.from_pretrained(base, subfolder="vae", use_safetensors=True, dtype=dtype, **kwargs), base)
        unet = load("UNet", lambda: UNet2DConditionModel.from_pretrained(base, subfolder="unet", use_safetensors=True, dtype=dtype, **kwargs), base)
        # The base's own noise schedule, sampled as generate.model_sets says for it: DPM-Solver++ for SD 2.1, a few-step
        # base's own sampler (SD-Turbo: Euler over trailing timesteps)
        scheduler = load("scheduler", lambda: sampling_for(base).scheduler_from(
            DPMSolverMultistepScheduler.load_config(base, subfolder="scheduler", **kwargs)), base)

        if isinstance(audio_encoder, AudioPromptEncoder):
            encoder, encoder_source = audio_encoder, None
        else:
            encoder_source = str(audio_encoder)
            encoder = load_audio_encoder(encoder_source, num_audio_tokens=num_audio_tokens, **kwargs)

        text_encoder = tokenizer = None
        needs_empty = not bool(encoder.empty_embedding.abs().sum() > 0)  # the original layout stores none
        if text_mixing or needs_empty:
            text_encoder = load("text encoder", lambda: CLIPTextModel.from_pretrained(base, subfolder="text_encoder", use_safetensors=True, **kwargs), base)
            tokenizer = load("tokenizer", lambda: CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **kwargs), base)
            if text_encoder.config.hidden_size != encoder.config.hidden_size:
                raise ValueError(
                    f"the base model's text encoder is {text_encoder.config.hidden_size}-dim, the audio encoder "
                    f"{encoder.config.hidden_size}-dim: the encoder was trained for another base model."
                )
            if needs_empty:
                # fp32, before any cast: the unconditional input of every image ever made with this pipeline
                encoder.set_empty_embedding(encode_captions([""], text_encoder.float(), tokenizer)[0])
            if not text_mixing:
                text_encoder = tokenizer = None

        try:  # a checkpoint may ship its own preprocessor_config.json; w2v-BERT 2.0's is the defaults
            feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(encoder_source, **kwargs) if encoder_source else SeamlessM4TFeatureExtractor()
        except (OSError, ValueError):
            feature_extractor = SeamlessM4TFeatureExtractor()

        encoder = encoder.to(dtype).eval()
        if text_encoder is not None:
            text_encoder = text_encoder.to(dtype)
        pipe = cls(vae=vae, audio_encoder=encoder, feature_extractor=feature_extractor, unet=unet, scheduler=scheduler,
                   text_encoder=text_encoder, tokenizer=tokenizer)
        pipe.register_to_config(_base_model=base, _audio_encoder_source=encoder_source)  # provenance, kept by save_pretrained
        return pipe.to(device)  # each model already has its dtype: `to(dtype=)` would re-cast the VAE's fp32 parts

    # ------------------------------------------------------------------------------------------------------------
    # Steps
    # ------------------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None,
                        license: str = "openrail++", **kwargs) -> None:
        """diffusers' folder of components, plus README.md: a model card (huggingface_hub's ModelCard, its metadata
        from ModelCardData) saying what the pipeline is made of and how to load it, written offline too.
        `push_to_hub=True, repo_id=...` uploads the folder, card included, with huggingface_hub."""
        super().save_pretrained(save_directory, **kwargs)
        self.model_card(license).save(Path(save_directory) / "README.md")
        if push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            if not repo_id:
                raise ValueError("push_to_hub needs a repo_id (owner/name)")
            create_repo(repo_id, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=str(save_directory), commit_message="AudioToImagePipeline.save_pretrained")

    def model_card(self, license: str = "openrail++"):
        """The pipeline's model card (huggingface_hub.ModelCard)."""
        from huggingface_hub import ModelCard, ModelCardData

        encoder = self.audio_encoder.config
        base = self.config.get("_base_model") or "(built from components)"
        source = self.config.get("_audio_encoder_source") or "(built from components)"
        data = ModelCardData(license=license, library_name="diffusers", tags=["audio-to-image", "stable-diffusion", "wav2vec2-bert"])
        return ModelCard(f"""---
{data.to_yaml()}
---

# AudioToImagePipeline: a sound in, images out

Stable Diffusion's UNet, VAE and scheduler (`{base}`) conditioned by an audio prompt encoder (`{source}`) in place
of the CLIP text encoder: {encoder.num_audio_tokens} audio tokens ({self.audio_encoder.window_samples / SAMPLE_RATE:.2f} s
of sound) + the BOS state, {encoder.hidden_size}-wide. Components: {", ".join(sorted(k for k, v in self.components.items() if v is not None))}.

```python
from generate import AudioToImagePipeline

pipe = AudioToImagePipeline.from_pretrained("<this folder or Hub id>")
image = pipe("sound.wav").images[0]
```

or `python -m generate --pipeline <this folder> --audio sound.wav --out out/` (and `python app.py --pipeline <this folder>`).
License: {license} (Stable Diffusion 2.1's); the audio encoder's card names its own.
""")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loading; a folder saved before the encoder's module moved from align/ to hearing/ names it
        `align.encoder` in its model_index.json, which is given the same module, so such folders still load."""
        sys.modules.setdefault("align.encoder", sys.modules[AudioPromptEncoder.__module__])
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def load(
        cls,
        pipeline: str | os.PathLike | None = None,
        base_model: str | os.PathLike = DEFAULT_BASE_MODEL,
        audio_encoder: str | os.PathLike = ORIGINAL_CHECKPOINT,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        text_mixing: bool = False,
        num_audio_tokens: int | None = None,
        cpu_offload: bool = False,
    ) -> "AudioToImagePipeline":
        """The one way the command line, evaluation runs and the app get a pipeline, ready on its device.

        A saved pipeline folder (`pipeline`, written by `save_pretrained`) if given, else `from_base_model`.
        `cpu_offload` keeps the models in CPU memory and moves each to `device` only while it runs.
        """
        device, dtype = resolve_device_and_dtype(device, dtype)
        load_on = torch.device("cpu") if cpu_offload else device
        if pipeline is not None:
            folder = Path(pipeline)
            if not (folder / "model_index.json").is_file():
                raise FileNotFoundError(f"{folder}: not a saved pipeline (no model_index.json). Give the folder written by AudioToImagePipeline.save_pretrained.")
            pipe = cls.from_pretrained(folder, dtype=dtype).to(load_on)
        else:
            pipe = cls.from_base_model(base_model, audio_encoder, dtype=dtype, device=load_on, text_mixing=text_mixing, num_audio_tokens=num_audio_tokens)
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        return pipe

    def load_windows(self, audio, sampling_rate: int | None, window_policy: str, max_audio_seconds: float | None,
                     max_windows: int | None = None) -> tuple[list[np.ndarray], list[dict]]:
        """Every sound → its 16 kHz windows (what conditions each image) and where each lies in its sound.

        Refuses (AudioError) a sound cut into more than `max_windows` windows, before any model runs."""
        items = audio if isinstance(audio, list) else [audio]
        window = self.audio_encoder.window_samples
        waves, info = [], []
        for index, item in enumerate(items):
            try:
                wave = load_audio(item, sampling_rate, max_seconds=max_audio_seconds)
            except AudioError as error:
                raise AudioError(f"audio {index}: {error}" if len(items) > 1 else str(error)) from error
            cuts = split_windows(wave, window, window_policy)
            if max_windows is not None and len(cuts) > max_windows:
                raise TooManyWindows(f"{f'audio {index}: ' if len(items) > 1 else ''}{len(wave) / SAMPLE_RATE:.0f} s of sound make "
                                     f"{len(cuts)} windows of {window / SAMPLE_RATE:.1f} s, over the limit of {max_windows}. Hear the "
                                     "first or the loudest window instead, or trim the sound.")
            squeezed = squeezed_span(wave, window) if window_policy == "first" and wave.shape[0] > window else None
            for number, (start, cut) in enumerate(cuts):
                waves.append(cut)
                info.append({
                    "audio": index, "window": number, "num_windows": len(cuts), "start_s": start / SAMPLE_RATE,
                    "end_s": (squeezed[1] if squeezed else min(start + window, wave.shape[0])) / SAMPLE_RATE,
                    "repeated": wave.shape[0] < window, "sped_up": squeezed is not None,
                })
        return waves, info

    def encode_audio(self, waves: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """Windows (exactly `window_samples` long) → prompt states (B, 1 + num_audio_tokens, hidden)."""
        features = self.audio_encoder.features(waves, self.feature_extractor, crop="start", device=device, dtype=self.audio_encoder.dtype)
        return self.audio_encoder(**features).last_hidden_state

    def encode_text(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        """CLIP `last_hidden_state` over all 77 positions, as SD 2.1 encodes a prompt (and as our targets are)."""
        ids = self.tokenizer(prompts, padding="longest", return_tensors="pt").input_ids
        if ids.shape[-1] > self.tokenizer.model_max_length:
            logger.warning("the prompt is longer than %d CLIP tokens: the rest is cut off", self.tokenizer.model_max_length)
        return encode_captions(prompts, self.text_encoder, self.tokenizer).to(device)

    def encode_prompt(
        self,
        audio: AudioInput | list[AudioInput] | None = None,
        device: torch.device | None = None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        prompt: str | list[str] | None = None,
        text_weight: float = 1.0,
        sampling_rate: int | None = None,
        window_policy: str = "first",
        max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
        max_windows: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        A sound's condition, encoded once: `(prompt_embeds, negative_prompt_embeds)` for every window of `audio` (the
        call's arguments of the same names), repeated `num_images_per_prompt` times; the negative is None without
        guidance. Pass them to `__call__` as `prompt_embeds=` / `negative_prompt_embeds=` (with
        `num_images_per_prompt=1` here) to draw from them again without the sound or the audio encoder. Given
        `prompt_embeds`, they are only repeated (the negative defaults to the encoder's stored empty caption).
        """
        device = device or self._execution_device
        if prompt_embeds is None:
            waves, windows = self.load_windows(audio, sampling_rate, window_policy, max_audio_seconds, max_windows)
            prompt_embeds, negative_prompt_embeds = self._encode_windows(waves, device, num_images_per_prompt, do_classifier_free_guidance,
                                                                         window_prompts(prompt, windows), text_weight)
        else:
            dtype = self.unet.dtype if self.unet is not None else prompt_embeds.dtype
            prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
            if negative_prompt_embeds is None:
                negative_prompt_embeds = self.audio_encoder.empty_embedding.unsqueeze(0).expand(prompt_embeds.shape[0], -1, -1)
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_images_per_prompt, dim=0)
            prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            negative_prompt_embeds = negative_prompt_embeds if do_classifier_free_guidance else None
        return prompt_embeds, negative_prompt_embeds

    def _encode_windows(
        self,
        waves: list[np.ndarray],
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        prompt: list[str] | None = None,
        text_weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        The UNet's condition for each window, and the unconditional input for guidance.

        Audio plus words: the prompt's CLIP encoding (all 77 positions) is **concatenated after the audio
        states along the sequence**; the unconditional input is the stored empty encoding followed by CLIP's
        encoding of "". Why concatenation and not a weighted mix of the two sequences: the states are
        positional (token i of the audio's implied caption is not token i of "as an oil painting"), so a
        position-by-position average blends unrelated words, and the two lengths differ for encoders with
        other windows (the original: 48 positions). Concatenated, cross-attention picks from both, as it does
        for SD prompts longer than 77 tokens (chunks of 77 joined, e.g. compel's long prompts and `.and()`),
        and each part stays exactly what the UNet was trained to read. `text_weight` moves the words' states
        from the empty caption's (0) to the full encoding (1) and past it (> 1: stronger), the way compel
        down-weights a prompt part. Without a prompt nothing is appended: the result is that of audio alone.
        """
        prompt_embeds = self.encode_audio(waves, device)
        negative_prompt_embeds = self.audio_encoder.empty_embedding.to(device=device, dtype=prompt_embeds.dtype)
        negative_prompt_embeds = negative_prompt_embeds.unsqueeze(0).expand(len(waves), -1, -1)
        if prompt is not None:
            text = self.encode_text(prompt, device).to(prompt_embeds.dtype)
            empty = self.encode_text([""], device).to(prompt_embeds.dtype).expand_as(text)
            prompt_embeds = torch.cat([prompt_embeds, empty + text_weight * (text - empty)], dim=1)
            negative_prompt_embeds = torch.cat([negative_prompt_embeds, empty], dim=1)

        dtype = self.unet.dtype if self.unet is not None else prompt_embeds.dtype  # no UNet: encode_prompt alone
        prompt_embeds = prompt_embeds.to(dtype).repeat_interleave(num_images_per_prompt, dim=0)
        negative_prompt_embeds = negative_prompt_embeds.to(dtype).repeat_interleave(num_images_per_prompt, dim=0)
        return prompt_embeds, (negative_prompt_embeds if do_classifier_free_guidance else None)

    def check_inputs(
        self,
        audio,
        prompt,
        height,
        width,
        num_images_per_prompt,
        num_inference_steps,
        guidance_scale,
        window_policy,
        best_of,
        scorer,
        output_type,
        callback_on_step_end_tensor_inputs=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
    ):
        if prompt_embeds is not None:
            if audio is not None:
                raise ValueError("give either `audio` or `prompt_embeds` (a sound encoded before, by `encode_prompt`), not both")
            if prompt is not None or scorer is not None:
                raise ValueError("`prompt_embeds` are the whole condition: words and ranking need the sound itself (give `audio`)")
            if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != self.unet.config.cross_attention_dim:
                raise ValueError(f"`prompt_embeds` must be (windows, positions, {self.unet.config.cross_attention_dim}), got {tuple(prompt_embeds.shape)}")
            negative_shape = (tuple(negative_prompt_embeds.shape) if negative_prompt_embeds is not None else
                              (prompt_embeds.shape[0], *self.audio_encoder.empty_embedding.shape))
            if negative_shape != tuple(prompt_embeds.shape):
                raise ValueError(f"`negative_prompt_embeds` {negative_shape} must have the shape of `prompt_embeds` {tuple(prompt_embeds.shape)}"
                                 + ("" if negative_prompt_embeds is not None else ": give the ones `encode_prompt` returned with them"))
        elif negative_prompt_embeds is not None:
            raise ValueError("`negative_prompt_embeds` go with `prompt_embeds`")
        elif audio is None or (isinstance(audio, list) and len(audio) == 0):
            raise ValueError("no audio given: pass a path, the bytes of a file, an array with `sampling_rate`, a (sampling_rate, array) tuple, or a list of these")
        if isinstance(audio, list) and all(isinstance(x, (int, float, np.number)) for x in audio):
            raise ValueError("`audio` is a list of numbers: pass the samples as a numpy array with `sampling_rate` (a list means a batch of sounds)")
        if height % 8 != 0 or width % 8 != 0 or height < 8 or width < 8:
            raise ValueError(f"`height` and `width` have to be positive and divisible by 8 but are {height} and {width}.")
        native = self.unet.config.sample_size
        native = (native, native) if isinstance(native, int) else native
        for name, pixels, own in (("height", height, native[0]), ("width", width, native[1])):
            side_for_model(pixels, f"`{name}`", own * self.vae_scale_factor)
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` has to be a positive integer but is {num_images_per_prompt!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` has to be a positive integer but is {num_inference_steps!r}")
        if guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0 (1 turns guidance off; SD 2.1 likes 5-9), got {guidance_scale}")
        if window_policy not in WINDOW_POLICIES:
            raise ValueError(f"unknown `window_policy` {window_policy!r}; use one of {', '.join(WINDOW_POLICIES)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown `output_type` {output_type!r}; use one of {', '.join(OUTPUT_TYPES)}")
        if not isinstance(best_of, int) or best_of < 1:
            raise ValueError(f"`best_of` has to be a positive integer but is {best_of!r}")
        if best_of > 1 and scorer is None:
            raise ValueError("`best_of` > 1 needs a `scorer` to rank the candidates (e.g. scoring.AudioImageScorer)")
        if scorer is not None and not isinstance(scorer, Scorer):
            raise ValueError("`scorer` must have a `score_images(audio_16k_mono, images) -> scores` method")
        if scorer is not None and output_type == "latent":
            raise ValueError("ranking needs decoded images: use output_type 'pil', 'np' or 'pt' with a scorer")
        if prompt is not None:
            if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not all(isinstance(p, str) for p in prompt)):
                raise ValueError(f"`prompt` has to be a string or a list of strings but is {type(prompt)}")
            if isinstance(prompt, list) and len(prompt) != (len(audio) if isinstance(audio, list) else 1):
                raise ValueError(f"{len(prompt)} prompts for {len(audio) if isinstance(audio, list) else 1} sounds: give one prompt, or one per sound")
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError(
                    "a text `prompt` needs the base model's text encoder and tokenizer: build the pipeline with "
                    "`AudioToImagePipeline.from_base_model(..., text_mixing=True)` (the CLI does so for --prompt with --base-model; "
                    "a saved --pipeline folder must have been saved with them)"
                )
        if callback_on_step_end_tensor_inputs is not None and not all(k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found "
                f"{[k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]}"
            )

    def rank(self, images: torch.Tensor, waves: list[np.ndarray], group: int, keep: int, scorer) -> tuple[torch.Tensor, torch.Tensor]:
        """Score each window's `group` candidates against its sound; keep the best `keep` of each, best first."""
        pil = self.image_processor.postprocess(images.detach(), output_type="pil")
        kept, scores = [], []
        for w, wave in enumerate(waves):
            candidates = pil[w * group : (w + 1) * group]
            score = torch.as_tensor(scorer.score_images(wave, candidates), dtype=torch.float32).reshape(-1).cpu()
            if score.shape[0] != group:
                raise ValueError(f"the scorer gave {score.shape[0]} scores for {group} images")
            order = torch.argsort(score, descending=True, stable=True)[:keep]
            kept.append(order + w * group)
            scores.append(score[order])
        kept = torch.cat(kept)
        return images[kept.to(images.device)], torch.cat(scores)

    @property
    def sampling(self) -> Sampling:
        """How this pipeline samples by default: its base model's steps and guidance (generate.model_sets). Loaded from a
        saved folder, the base is the one its model_index.json names (diffusers does not load private config keys back)."""
        return sampling_for(self.config.get("_base_model") or self.config.get("_name_or_path"))

    def prepare_edit(self, height: int, width: int) -> dict | None:
        """The picture an editing pipeline changes (AudioImageToImagePipeline, AudioInpaintPipeline), as `_generate`
        takes it: {"image", "strength", "mask"}; None for drawing from noise."""
        request = getattr(self, "_edit_request", None)
        if request is None:
            return None
        image, strength, mask_image = request
        mask = None if mask_image is None else VaeImageProcessor(do_normalize=False, do_binarize=True, do_convert_grayscale=True).preprocess(mask_image, height, width)
        return {"image": self.image_processor.preprocess(image, height, width), "strength": strength, "mask": mask}

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

    @property
    def cross_attention_kwargs(self):
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self):
        return self._num_timesteps

    @property
    def interrupt(self):
        return self._interrupt

    def _generate(self, waves, prompts, candidates, num_images_per_prompt, text_weight, height, width, device, generator, eta,
                  scorer, output_type, latents, timesteps, sigmas, num_inference_steps, callback_on_step_end,
                  callback_on_step_end_tensor_inputs, edit=None, embeds=None):
        """Steps 3-8 for one group of windows: (images of the group, their scores or None). With `edit` (see
        `prepare_edit`), denoising starts from the given image noised to `strength`, and only the mask may change.
        With `embeds` (the call's prompt_embeds and negative_prompt_embeds of the group), no sound is encoded."""
        batch_size = len(waves) if embeds is None else embeds[0].shape[0]
        if edit is not None and edit["strength"] == 0:  # nothing may change: the picture as it was, for every candidate
            image = edit["image"].to(device).expand(batch_size * num_images_per_prompt, -1, -1, -1)
            return (self.vae.encode(image.to(self.vae.dtype)).latent_dist.mean * self.vae.config.scaling_factor if output_type == "latent" else
                    self.image_processor.postprocess(image, output_type=output_type)), None
        # 3. Encode input audio (and words), or repeat the states given
        if embeds is None:
            prompt_embeds, negative_prompt_embeds = self._encode_windows(
                waves, device, candidates, self.do_classifier_free_guidance, prompt=prompts, text_weight=text_weight
            )
        else:
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                device=device, num_images_per_prompt=candidates, do_classifier_free_guidance=self.do_classifier_free_guidance,
                prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1])
        # For classifier free guidance, we need to do two forward passes.
        # Here we concatenate the unconditional and audio embeddings into a single batch
        # to avoid doing two forward passes
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 4. Prepare timesteps (an edit skips the first 1 - strength of them, as diffusers' image-to-image does)
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
        if edit is not None and edit["strength"] < 1:
            # at least one step: any strength above 0 changes something (0 itself returns the picture, before this)
            skip = num_inference_steps - min(max(int(round(num_inference_steps * edit["strength"])), 1), num_inference_steps)
            timesteps, num_inference_steps = timesteps[skip * self.scheduler.order :], num_inference_steps - skip
            self.scheduler.set_begin_index(skip * self.scheduler.order)

        # 5. Prepare latent variables (an edit: the image's latents, noised to the first remaining timestep)
        latents = self.prepare_latents(
            batch_size * candidates, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device, generator, latents
        )
        noise = latents
        if edit is not None:
            init_latents = self.vae.encode(edit["image"].to(device, self.vae.dtype)).latent_dist.mean * self.vae.config.scaling_factor
            init_latents = init_latents.to(latents.dtype).expand_as(latents)
            if edit["strength"] < 1:
                latents = self.scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(latents.shape[0]))
            keep = None if edit["mask"] is None else 1 - torch.nn.functional.interpolate(edit["mask"].to(device, latents.dtype), size=latents.shape[-2:])

        # 6. Prepare extra step kwargs.
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 7. Denoising loop
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue

                # expand the latents if we are doing classifier free guidance
                latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)

                # predict the noise residual (v for SD 2.1)
                noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds,
                                       cross_attention_kwargs=self.cross_attention_kwargs, return_dict=False)[0]

                # perform guidance
                if self.do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_audio = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_audio - noise_pred_uncond)

                # compute the previous noisy sample x_t -> x_t-1
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if edit is not None and keep is not None:  # outside the mask, the image itself at this step's noise level
                    original = init_latents if i == len(timesteps) - 1 else self.scheduler.add_noise(init_latents, noise, timesteps[i + 1 : i + 2].repeat(latents.shape[0]))
                    latents = keep * original + (1 - keep) * latents

                if callback_on_step_end is not None:
                    step_locals = locals()  # outside the comprehension, which has locals of its own
                    callback_kwargs = {k: step_locals[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 8. Decode, rank, post-process
        scores = None
        if output_type == "latent":
            image = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
            if edit is not None and edit["mask"] is not None:  # pixels outside the mask are the original's, exactly
                mask = edit["mask"].to(image.device, image.dtype)
                image = mask * image + (1 - mask) * edit["image"].to(image.device, image.dtype)
        if scorer is not None:
            image, scores = self.rank(image, waves, candidates, num_images_per_prompt, scorer)
        if output_type != "latent":
            image = self.image_processor.postprocess(image, output_type=output_type)

        return image, scores

    @torch.no_grad()
    def __call__(
        self,
        audio: AudioInput | list[AudioInput] | None = None,
        sampling_rate: int | None = None,
        prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        window_policy: str = "first",
        best_of: int = 1,
        scorer: Scorer | None = None,
        text_weight: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        latents: torch.Tensor | None = None,
        eta: float = 0.0,
        max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
        max_windows: int | None = None,
        batch_size: int | None = 8,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ):
        r"""
        Generate images from sound.

        Args:
            audio (path, `bytes`, `np.ndarray`, `(sampling_rate, array)` or a list of these):
                The sound(s); any sampling rate (resampled to 16 kHz), mono or multi-channel. A list is a batch.
            sampling_rate (`int`, *optional*):
                The sampling rate of array input.
            prompt (`str` or `list[str]`, *optional*):
                Words to combine with the sound ("as an oil painting"), one for all or one per sound; needs
                `text_encoder` and `tokenizer`. How they combine: see `encode_prompt`.
            num_images_per_prompt (`int`, defaults to 1):
                Images per sound window.
            num_inference_steps (`int`, *optional*):
                Denoising steps; defaults to the base model's (`sampling`): 25 for SD 2.1 (DPM-Solver++: 20-25 is
                plenty), 1 for SD-Turbo.
            guidance_scale (`float`, *optional*):
                Classifier-free guidance against the empty caption; 1 or less turns it off (one UNet pass a step).
                Defaults to the base model's: 7.5 for SD 2.1, 0 for SD-Turbo.
            height / width (`int`, *optional*):
                Image size in pixels, multiples of 8; defaults to the UNet's (768 for SD 2.1).
            generator (`torch.Generator` or a list, one per generated candidate):
                For reproducible results.
            window_policy (`str`, defaults to "first"):
                For a sound longer than the encoder's window (~6 s; shorter ones are repeated to fill it):
                "first" (from where the sound begins; a sound up to `hearing.audio.SQUEEZE_MAX` windows long is heard
                whole, sped up to fit at its pitch, so a long spoken request keeps its last words), "loudest" (highest
                energy) or "all" (one image set per window, in order: a storyboard).
            best_of (`int`, defaults to 1):
                Generate `best_of` candidates per requested image and keep the best by `scorer`.
            scorer (*optional*):
                An object with `score_images(audio_16k_mono, images) -> Tensor (N,)`, higher is better. With it,
                the images of each window are sorted best first and `scores` is filled.
            text_weight (`float`, defaults to 1.0):
                Strength of `prompt` (0: as if absent but for the extra positions, 1: as written).
            output_type (`str`, defaults to "pil"):
                "pil", "np", "pt" or "latent".
            return_dict (`bool`, defaults to True):
                Return an [`AudioToImagePipelineOutput`] instead of a tuple `(images, scores, windows)`.
            callback_on_step_end (`Callable`, *optional*):
                Called after each step as `callback_on_step_end(self, step, timestep, callback_kwargs)` with the
                tensors named in `callback_on_step_end_tensor_inputs`; may return replacements.
            latents (`torch.Tensor`, *optional*):
                Initial noise, instead of drawing it from `generator`.
            max_audio_seconds (`float`, *optional*):
                Refuse longer sounds (default 600 s); None for no limit.
            max_windows (`int`, *optional*):
                Refuse a sound that `window_policy` would cut into more windows than this (None: no limit).
            batch_size (`int`, *optional*, defaults to 8):
                Most images denoised at once (windows × candidates); more windows go through in groups, one after
                another, so memory stays bounded. None: all at once.
            prompt_embeds (`torch.Tensor`, *optional*):
                Instead of `audio`: states `encode_prompt` gave for a sound, (windows, positions, hidden), one image
                set per window; the sound is not read and the audio encoder not run.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                The unconditional input that goes with `prompt_embeds` (default: the encoder's stored empty caption).
            cross_attention_kwargs (`dict`, *optional*):
                Passed to the UNet's attention processors, as in diffusers (`{"scale": 0.7}` for a LoRA's strength).

        Examples:
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 0. Default steps and guidance to the base model's sampling, height and width to unet
        num_inference_steps = self.sampling.steps if num_inference_steps is None else num_inference_steps
        guidance_scale = self.sampling.guidance if guidance_scale is None else guidance_scale
        sample_size = self.unet.config.sample_size
        sample_size = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
        height = sample_size[0] * self.vae_scale_factor if height is None else height  # 0 is refused below, not replaced
        width = sample_size[1] * self.vae_scale_factor if width is None else width

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(
            audio, prompt, height, width, num_images_per_prompt, num_inference_steps, guidance_scale, window_policy,
            best_of, scorer, output_type, callback_on_step_end_tensor_inputs,
            prompt_embeds, negative_prompt_embeds,
        )
        self._guidance_scale = guidance_scale
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False

        # 2. Define call parameters: the sound's windows are the "prompts" of this pipeline (or the states given for them)
        if prompt_embeds is None:
            waves, windows = self.load_windows(audio, sampling_rate, window_policy, max_audio_seconds, max_windows)
        else:
            waves, windows = [None] * prompt_embeds.shape[0], [{"audio": 0, "window": w, "num_windows": prompt_embeds.shape[0]}
                                                              for w in range(prompt_embeds.shape[0])]
        prompts = window_prompts(prompt, windows)
        candidates = num_images_per_prompt * best_of  # per window
        device = self._execution_device
        edit = self.prepare_edit(height, width)  # None here; the picture to change, in the editing pipelines below
        # Windows go through in groups of at most `batch_size` images, so memory stays bounded however long the
        # sound; one group (the usual case) draws its noise exactly as an unbatched call would.
        per_group = max(1, (batch_size or len(waves) * candidates) // candidates)
        groups = [range(g, min(g + per_group, len(waves))) for g in range(0, len(waves), per_group)]
        if latents is not None and latents.shape[0] != len(waves) * candidates:
            raise ValueError(f"`latents` holds {latents.shape[0]} samples for {len(waves) * candidates} images")
        images, scores = [], []
        for group in tqdm(groups, desc="windows", unit="group", disable=len(groups) == 1 or self._progress_bar_config.get("disable", False)):
            image, score = self._generate(
                [waves[w] for w in group], None if prompts is None else [prompts[w] for w in group], candidates,
                num_images_per_prompt, text_weight, height, width, device,
                generator[group.start * candidates : group.stop * candidates] if isinstance(generator, list) else generator,
                eta, scorer, output_type,
                None if latents is None else latents[group.start * candidates : group.stop * candidates],
                timesteps, sigmas, num_inference_steps, callback_on_step_end, callback_on_step_end_tensor_inputs, edit,
                None if prompt_embeds is None else (prompt_embeds[group.start : group.stop],
                                                    None if negative_prompt_embeds is None else negative_prompt_embeds[group.start : group.stop]),
            )
            images.append(image)
            scores.append(score)
        image = images[0] if len(images) == 1 else (sum(images, []) if isinstance(images[0], list) else
                                                    (np.concatenate(images) if isinstance(images[0], np.ndarray) else torch.cat(images)))
        scores = None if scores[0] is None else torch.cat(scores)
        windows = [dict(windows[i // num_images_per_prompt]) for i in range(len(waves) * num_images_per_prompt)]

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (image, scores, windows)
        return AudioToImagePipelineOutput(images=image, scores=scores, windows=windows)




class AudioImageToImagePipeline(AudioToImagePipeline):
    r"""
    A picture changed by a sound (diffusers' image-to-image): denoising starts from `image` noised to `strength`, so
    the sound changes it only as much as asked. The same components as [`AudioToImagePipeline`]; build it from one
    with `AudioImageToImagePipeline(**pipe.components)` or `AudioImageToImagePipeline.from_pipe(pipe)`.
    """

    def __call__(self, audio=None, image: PIL.Image.Image | None = None, strength: float = 0.6, **kwargs):
        r"""
        Args:
            audio, and every other argument: as [`AudioToImagePipeline.__call__`].
            image (`PIL.Image.Image`):
                The picture to change. It is resized to `height` × `width`.
            strength (`float`, defaults to 0.6):
                How much of `image` changes: 0 returns it as it is, 1 ignores it (a new image, as without one).
        """
        return self._edit(audio, image, strength, None, kwargs)

    def _edit(self, audio, image, strength, mask_image, kwargs):
        if not isinstance(image, PIL.Image.Image):
            raise ValueError(f"`image` must be the PIL image to change, got {type(image).__name__}")
        if not 0 <= strength <= 1:
            raise ValueError(f"`strength` must be between 0 (keep the image) and 1 (ignore it), got {strength}")
        self._edit_request = (image, strength, mask_image)
        try:
            return AudioToImagePipeline.__call__(self, audio, **kwargs)
        finally:
            self._edit_request = None


def window_prompts(prompt: str | list[str] | None, windows: list[dict]) -> list[str] | None:
    """Each window's words: the one prompt for all, or its own sound's prompt (None without words)."""
    if prompt is None:
        return None
    return [prompt if isinstance(prompt, str) else prompt[w["audio"]] for w in windows]


def editing_pipeline(pipe: AudioToImagePipeline, inpaint: bool = False) -> AudioImageToImagePipeline:
    """The editing pipeline on `pipe`'s own components (nothing loaded twice), with its progress-bar settings:
    AudioInpaintPipeline when a mask says what may change, else AudioImageToImagePipeline."""
    editing = (AudioInpaintPipeline if inpaint else AudioImageToImagePipeline)(**pipe.components)
    editing.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return editing


class AudioInpaintPipeline(AudioImageToImagePipeline):
    r"""
    A sound redraws part of a picture (diffusers' inpainting): white in `mask_image` may change, black stays, and
    pixels outside the mask are returned exactly as they were. Built like [`AudioImageToImagePipeline`].
    """

    def __call__(self, audio=None, image: PIL.Image.Image | None = None, mask_image: PIL.Image.Image | None = None,
                 strength: float = 0.6, **kwargs):
        r"""
        Args:
            audio, and every other argument: as [`AudioToImagePipeline.__call__`].
            image (`PIL.Image.Image`):
                The picture to change. It is resized to `height` × `width`.
            mask_image (`PIL.Image.Image`):
                White where the picture may change, black where it must stay.
            strength (`float`, defaults to 0.6):
                How much of the masked part changes: 0 keeps it, 1 redraws it from noise.
        """
        if not isinstance(mask_image, PIL.Image.Image):
            raise ValueError(f"`mask_image` must be a PIL image (white where the picture may change), got {type(mask_image).__name__}")
        return self._edit(audio, image, strength, mask_image, kwargs)


AudioToImagePipeline.__call__.__doc__ = AudioToImagePipeline.__call__.__doc__.replace("        Examples:\n", EXAMPLE_DOC_STRING, 1)
