"""Score how well an image shows a sound: CLAP hears the audio, CLIP sees the image, and they meet over words.

CLAP has no image tower and CLIP no audio tower, so both are asked the same question: which entry of a
vocabulary (scoring.vocabulary) does this describe? CLAP gives a distribution over the vocabulary for the
sound, CLIP one for each image, and the two are compared (scoring.metrics): **agreement** (1 − JSD₂), **AIC**
(audio-image consistency: the top entry is the same on both sides) and, with a reference caption, the CLAP
audio–caption and CLIP image–caption cosine similarities. Each model's own learned logit scale (the temperature
it was trained with) makes its distribution, so neither side is sharpened by hand.

    scorer = AudioImageScorer.from_pretrained()                      # laion/clap-htsat-unfused + CLIP ViT-L/14, ESC-50
    result = scorer.score(load_audio("dog.wav"), images, reference_caption="a dog barking")
    best = scorer.score_images(wave_16k, images).argsort(descending=True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hearing.audio import SAMPLE_RATE, load_audio, resample, split_windows, to_mono
from hearing.device import resolve_device_and_dtype
from hearing.model_ids import DEFAULT_CLAP, DEFAULT_CLIP
from scoring.metrics import agreement
from scoring.vocabulary import DEFAULT_AUDIO_TEMPLATE, DEFAULT_IMAGE_TEMPLATE, Vocabulary, load_vocabulary


@dataclass
class ScoreResult:
    """Per-image scores for one sound against N images (every tensor has N rows)."""

    agreement: torch.Tensor  # (N,) float in [0, 1], 1 − JSD₂ of the audio and image distributions
    aic: torch.Tensor  # (N,) bool: the top vocabulary entry is the same for the audio and the image
    audio_top: torch.Tensor  # (N,) long: the audio's top entry (one sound, so the same in every row)
    image_top: torch.Tensor  # (N,) long: each image's top entry
    audio_caption_similarity: torch.Tensor | None = None  # (N,) CLAP cosine(audio, reference caption)
    image_caption_similarity: torch.Tensor | None = None  # (N,) CLIP cosine(image, reference caption)
    audio_probs: torch.Tensor | None = field(default=None, repr=False)  # (V,) the audio's distribution
    image_probs: torch.Tensor | None = field(default=None, repr=False)  # (N, V) each image's distribution


# --------------------------------------------------------------------------------------------------------------
# The scorer


class AudioImageScorer:
    """Scores images against a sound through a shared vocabulary (see the module docstring).

    Build it from the Hub with `from_pretrained`, or from models already in memory (tests, notebooks):
    `AudioImageScorer(clap_model, clap_processor, clip_model, clip_processor, vocabulary)`.
    """

    def __init__(
        self,
        clap_model,
        clap_processor,
        clip_model,
        clip_processor,
        vocabulary: str | os.PathLike | Sequence[str] | Vocabulary = "esc50",
        *,
        device: str | torch.device | None = None,
        audio_template: str = DEFAULT_AUDIO_TEMPLATE,
        image_template: str = DEFAULT_IMAGE_TEMPLATE,
        text_batch_size: int = 256,
        image_batch_size: int = 32,
        audio_batch_size: int = 16,
    ):
        if device is not None:
            clap_model, clip_model = clap_model.to(device), clip_model.to(device)
        self.clap_model, self.clip_model = clap_model.eval(), clip_model.eval()
        self.clap_processor, self.clip_processor = clap_processor, clip_processor
        self.vocabulary = load_vocabulary(vocabulary, audio_template, image_template)
        self.text_batch_size, self.image_batch_size, self.audio_batch_size = text_batch_size, image_batch_size, audio_batch_size
        extractor = clap_processor.feature_extractor
        self.clap_rate = int(extractor.sampling_rate)
        self.clap_window = int(extractor.nb_max_samples)  # CLAP's window (10 s at 48 kHz for the real model)
        # An unfused CLAP reads one mel channel: "rand_trunc" gives it, and since we never pass more than one
        # window it crops nothing, so scoring is deterministic. A fused CLAP needs "fusion"'s 4 channels.
        self.fusion = bool(getattr(clap_model.config.audio_config, "enable_fusion", False))
        self._vocab_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None
        self._caption_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(
        cls,
        clap_model: str = DEFAULT_CLAP,
        clip_model: str = DEFAULT_CLIP,
        vocabulary: str | os.PathLike | Sequence[str] | Vocabulary = "esc50",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> "AudioImageScorer":
        """Load CLAP and CLIP (Hub ids or local folders). Defaults: hearing.device's choice (cuda, mps, cpu), float32.

        float32 by default because scoring is cheap next to generation, and on CPU half precision is far
        slower (no bf16/fp16 hardware here). Extra keyword arguments go to the constructor (templates, batch sizes).
        """
        from transformers import ClapModel, ClapProcessor, CLIPModel, CLIPProcessor

        device, _ = resolve_device_and_dtype(device)
        dtype = dtype or torch.float32
        # CLIPProcessor falls back to the PIL image processor when torchvision is missing (it must stay missing here).
        clap = ClapModel.from_pretrained(clap_model, dtype=dtype)
        clip = CLIPModel.from_pretrained(clip_model, dtype=dtype)
        return cls(clap, ClapProcessor.from_pretrained(clap_model), clip, CLIPProcessor.from_pretrained(clip_model),
                   vocabulary, device=device, **kwargs)

    # -- embeddings ------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.clip_model.parameters()).device

    def _to(self, batch, model) -> dict:
        param = next(model.parameters())
        return {k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device)) for k, v in batch.items()}

    @torch.inference_mode()
    def _text(self, texts: Sequence[str], model, processor) -> torch.Tensor:
        """Unit-length projected text embeddings from CLAP's or CLIP's text tower, in batches."""
        out = []
        for s in range(0, len(texts), self.text_batch_size):
            tokens = processor(text=list(texts[s : s + self.text_batch_size]), padding=True, truncation=True, return_tensors="pt")
            out.append(model.get_text_features(**self._to(tokens, model)).pooler_output.float())
        return F.normalize(torch.cat(out), dim=-1).cpu()

    def _clap_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._text(texts, self.clap_model, self.clap_processor)

    def _clip_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._text(texts, self.clip_model, self.clip_processor)

    def vocabulary_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLAP text (V, Da), CLIP text (V, Di)) of the vocabulary's prompts, unit length, computed once."""
        if self._vocab_embeddings is None:
            self._vocab_embeddings = (self._clap_text(self.vocabulary.audio_prompts), self._clip_text(self.vocabulary.image_prompts))
        return self._vocab_embeddings

    def _caption_embeddings(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        # The caption is used as written (no template): it is the reference the clip was described with.
        if caption not in self._caption_cache:
            self._caption_cache[caption] = (self._clap_text([caption])[0], self._clip_text([caption])[0])
        return self._caption_cache[caption]

    def _prepare_audio(self, audio, sampling_rate: int) -> np.ndarray:
        """Any sound (path, bytes, array, tensor) → mono float32 at CLAP's rate (48 kHz)."""
        if isinstance(audio, (str, os.PathLike, bytes)):
            audio, sampling_rate = load_audio(audio), SAMPLE_RATE
        wave = to_mono(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio)
        if wave.size == 0:
            raise ValueError("the audio has no samples: pass a sound (16 kHz mono float32, as hearing.audio.load_audio gives)")
        if sampling_rate != self.clap_rate:
            wave = resample(wave, sampling_rate, self.clap_rate)  # from the source rate: nothing above 8 kHz is lost
        return np.ascontiguousarray(wave, dtype=np.float32)

    @torch.inference_mode()
    def embed_audio(self, audios: Sequence, sampling_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """(A, Da) unit CLAP audio embeddings. A clip longer than CLAP's window is cut into consecutive windows
        (the last ending at the clip's end) whose embeddings are averaged, so the whole sound counts and
        nothing is cropped at random. A shorter clip is repeat-padded by the feature extractor, as CLAP was trained."""
        windows, owner = [], []
        for a, audio in enumerate(audios):
            wave = self._prepare_audio(audio, sampling_rate)
            parts = [wave] if wave.shape[0] <= self.clap_window else [cut for _, cut in split_windows(wave, self.clap_window, "all")]
            windows += parts
            owner += [a] * len(parts)
        out = []
        for s in range(0, len(windows), self.audio_batch_size):
            # max_length explicitly: ClapProcessor copies a tokenizer's saved truncation length (tokenizer.json
            # "truncation": {"max_length": 512}) into the audio kwargs, and the extractor then crops the sound to
            # 512 samples at random. Passing all three audio settings keeps the tokenizer's out of them.
            inputs = self.clap_processor(audio=windows[s : s + self.audio_batch_size], sampling_rate=self.clap_rate,
                                         truncation="fusion" if self.fusion else "rand_trunc", padding="repeatpad",
                                         max_length=self.clap_window, return_tensors="pt")
            if self.fusion:
                # No window is longer than CLAP's, so none needs fusion; the extractor would flag one at random.
                inputs["is_longer"] = torch.zeros_like(inputs["is_longer"])
            out.append(self.clap_model.get_audio_features(**self._to(inputs, self.clap_model)).pooler_output.float().cpu())
        emb = F.normalize(torch.cat(out), dim=-1)
        summed = torch.zeros(len(audios), emb.shape[1]).index_add_(0, torch.tensor(owner), emb)
        return F.normalize(summed, dim=-1)

    @torch.inference_mode()
    def embed_images(self, images: Sequence) -> torch.Tensor:
        """(N, Di) unit CLIP image embeddings of PIL images."""
        out = []
        for s in range(0, len(images), self.image_batch_size):
            pixels = self.clip_processor(images=[im.convert("RGB") for im in images[s : s + self.image_batch_size]], return_tensors="pt")
            out.append(self.clip_model.get_image_features(**self._to(pixels, self.clip_model)).pooler_output.float().cpu())
        return F.normalize(torch.cat(out), dim=-1)

    # -- distributions over the vocabulary ---------------------------------------------------------------------

    def audio_distribution(self, audio_embeddings: torch.Tensor) -> torch.Tensor:
        """(A, V): CLAP's zero-shot distribution, softmax of cosine × CLAP's learned audio logit scale."""
        clap_text, _ = self.vocabulary_embeddings()
        scale = float(self.clap_model.logit_scale_a.detach().exp())
        return (scale * audio_embeddings @ clap_text.T).softmax(-1)

    def image_distribution(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, V): CLIP's zero-shot distribution, softmax of cosine × CLIP's learned logit scale."""
        _, clip_text = self.vocabulary_embeddings()
        scale = float(self.clip_model.logit_scale.detach().exp())
        return (scale * image_embeddings @ clip_text.T).softmax(-1)

    # -- public scoring --------------------------------------------------------------------------------------

    def score(self, audio, images, reference_caption: str | None = None, sampling_rate: int = SAMPLE_RATE) -> ScoreResult:
        """Score N images against one sound (16 kHz mono float32 by default; a path or other rate also works)."""
        images = [images] if hasattr(images, "convert") else list(images)
        if not images:
            raise ValueError("score() needs at least one image")
        audio_emb = self.embed_audio([audio], sampling_rate)
        image_emb = self.embed_images(images)
        p = self.audio_distribution(audio_emb)  # (1, V)
        q = self.image_distribution(image_emb)  # (N, V)
        n = len(images)
        audio_top = p.argmax(-1).expand(n)
        image_top = q.argmax(-1)
        result = ScoreResult(agreement=agreement(p, q), aic=audio_top == image_top, audio_top=audio_top.clone(),
                             image_top=image_top, audio_probs=p[0], image_probs=q)
        if reference_caption is not None:
            clap_caption, clip_caption = self._caption_embeddings(reference_caption)
            result.audio_caption_similarity = (audio_emb @ clap_caption).expand(n).clone()
            result.image_caption_similarity = image_emb @ clip_caption
        return result

    def score_images(self, audio_16k_mono: np.ndarray, images: list) -> torch.Tensor:
        """(N,) agreement of each image with the sound, higher = better: what `best_of` ranking sorts by."""
        return self.score(audio_16k_mono, images).agreement

    @torch.inference_mode()
    def caption_for(self, audio_16k_mono: np.ndarray) -> str:
        """The vocabulary entry CLAP hears in the sound, as a caption (what the cascade baseline draws)."""
        return self.vocabulary.entries[int(self.audio_distribution(self.embed_audio([audio_16k_mono])).argmax())]

    def entry(self, index: int) -> str:
        """The vocabulary entry at `index` (e.g. to print `audio_top` / `image_top`)."""
        return self.vocabulary.entries[int(index)]
