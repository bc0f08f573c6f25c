"""Score how well an image shows a sound: CLAP hears the audio, CLIP sees the image, and they meet over words.

CLAP has no image tower and CLIP no audio tower, so both are asked the same question: which entry of a
vocabulary (ESC-50's 50 classes, AudioSet's 527, or any list of words or captions) does this describe?
CLAP gives a distribution over the vocabulary for the sound, CLIP one for each image, and the two are compared:

- **agreement** = 1 − Jensen–Shannon divergence (base 2) of the two distributions, in [0, 1]: 1 when they are
  identical, 0 when they share no mass. Chosen over KL (unbounded, asymmetric, infinite where one side puts no
  mass) and over the top-1 match alone (it ignores the rest of the distribution, e.g. "dog" and "wolf" both
  likely). JSD is symmetric, bounded, finite with zeros, and its square root is a metric. It uses each model's
  own learned logit scale (the temperature it was trained with) so neither side is sharpened by hand.
- **AIC** (audio-image consistency): whether the top vocabulary entry is the same on both sides.
- with a reference caption: the CLAP audio–caption and CLIP image–caption cosine similarities.

`rank_scores` turns a clips × images agreement matrix into the AIS-style rank score the evaluation reports.

Prompt templates (settings): a vocabulary entry `x` is put to CLAP as "the sound of x" and to CLIP as
"a photo of x" (underscores become spaces, the first letter is lower-cased unless the entry is an acronym).
No article is added, so mass nouns ("rain", "footsteps") read right; pass `audio_template="{}"` and
`image_template="{}"` to use captions verbatim.

    scorer = AudioImageScorer.from_pretrained()                      # laion/clap-htsat-unfused + CLIP ViT-L/14, ESC-50
    result = scorer.score(load_audio("dog.wav"), images, reference_caption="a dog barking")
    best = scorer.score_images(wave_16k, images).argsort(descending=True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from align.audio import SAMPLE_RATE, load_audio, split_windows

VOCABULARY_DIR = Path(__file__).parent / "vocabularies"
BUILTIN_VOCABULARIES = {"esc50": "esc50.txt", "audioset": "audioset.txt"}
DEFAULT_CLAP = "laion/clap-htsat-unfused"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_AUDIO_TEMPLATE = "the sound of {}"
DEFAULT_IMAGE_TEMPLATE = "a photo of {}"


# --------------------------------------------------------------------------------------------------------------
# Vocabularies


@dataclass(frozen=True)
class Vocabulary:
    """Entries (labels or captions) and the prompts each tower reads for them, index for index."""

    entries: tuple[str, ...]
    audio_prompts: tuple[str, ...]
    image_prompts: tuple[str, ...]
    name: str = "custom"

    def __len__(self) -> int:
        return len(self.entries)


def _read_entries(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _phrase(entry: str) -> str:
    text = entry.replace("_", " ").strip()
    # "Dog" → "dog", but keep acronyms and names whose second letter is upper case ("DTMF", "TV").
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def load_vocabulary(
    vocabulary: str | os.PathLike | Sequence[str] | Vocabulary = "esc50",
    audio_template: str = DEFAULT_AUDIO_TEMPLATE,
    image_template: str = DEFAULT_IMAGE_TEMPLATE,
) -> Vocabulary:
    """A built-in name ("esc50", "audioset"), a text file (one entry a line, "#" comments), or a list of entries."""
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, (str, os.PathLike)):
        key = str(vocabulary)
        if key.lower() in BUILTIN_VOCABULARIES:
            name, entries = key.lower(), _read_entries(VOCABULARY_DIR / BUILTIN_VOCABULARIES[key.lower()])
        elif Path(key).is_file():
            name, entries = Path(key).stem, _read_entries(Path(key))
        else:
            raise ValueError(
                f"unknown vocabulary {key!r}: use one of {sorted(BUILTIN_VOCABULARIES)}, the path of a text file "
                "with one word or caption a line, or a list of strings"
            )
    else:
        name, entries = "custom", [str(e).strip() for e in vocabulary]
    if len(entries) < 2:
        raise ValueError(f"a vocabulary needs at least 2 entries to compare distributions over, got {len(entries)}")
    if len(set(entries)) != len(entries):
        dupes = sorted({e for e in entries if entries.count(e) > 1})
        raise ValueError(f"vocabulary {name!r} repeats entries {dupes[:5]}: remove the duplicates")
    for template in (audio_template, image_template):
        if "{}" not in template:
            raise ValueError(f"prompt template {template!r} must contain '{{}}' where the entry goes")
    phrases = [_phrase(e) for e in entries]
    return Vocabulary(
        entries=tuple(entries),
        audio_prompts=tuple(audio_template.format(p) for p in phrases),
        image_prompts=tuple(image_template.format(p) for p in phrases),
        name=name,
    )


# --------------------------------------------------------------------------------------------------------------
# Arithmetic on distributions (pure functions: tested on constructed numbers)


def agreement(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """1 − JSD₂(p, q) over the last dimension (broadcasting), in [0, 1]; 1 for identical distributions."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    # xlogy gives 0·log 0 = 0, so entries one side rules out cost nothing and never produce NaN.
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    jsd = 0.5 * (kl_pm + kl_qm) / np.log(2.0)
    return (1.0 - jsd).clamp(0.0, 1.0).float()


def agreement_matrix(audio_probs: torch.Tensor, image_probs: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """(A, V) × (I, V) → (A, I): the agreement of every audio with every image, in row chunks to bound memory."""
    a, i, v = audio_probs.shape[0], image_probs.shape[0], audio_probs.shape[1]
    if image_probs.shape[1] != v:
        raise ValueError(f"audio and image distributions are over different vocabularies ({v} vs {image_probs.shape[1]})")
    rows = max(1, chunk_elements // max(1, i * v))
    return torch.cat([agreement(audio_probs[s : s + rows, None, :], image_probs[None, :, :]) for s in range(0, a, rows)]) if a else torch.zeros(0, i)


def rank_scores(matrix: torch.Tensor, image_owner: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """AIS-style rank score per clip, in [0, 100].

    `matrix[c, j]` scores clip c's audio against image j; `image_owner[j]` is the clip image j was made from.
    A clip's score is 100 × the share of other clips' images that score below its own image (ties count half,
    as in the AUC), averaged over its own images. 50 is chance, 100 means its own images always win.
    """
    owner = torch.as_tensor(image_owner, dtype=torch.long)
    clips, images = matrix.shape
    if owner.shape != (images,):
        raise ValueError(f"image_owner needs one clip index per image ({images}), got shape {tuple(owner.shape)}")
    scores = torch.full((clips,), float("nan"))
    for c in range(clips):
        own = matrix[c, owner == c]
        other = matrix[c, owner != c]
        if own.numel() == 0 or other.numel() == 0:
            continue  # nothing to rank against: NaN, left out of the mean by the caller
        below = (other[None, :] < own[:, None]).double().mean(1)
        ties = (other[None, :] == own[:, None]).double().mean(1)
        scores[c] = float(100.0 * (below + 0.5 * ties).mean())
    return scores


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


def _mono(wave: np.ndarray) -> np.ndarray:
    """Mix to mono with align.audio's convention: (samples, channels) from decoders, (channels, samples) from torch."""
    if wave.ndim == 2:
        wave = wave.mean(axis=1) if wave.shape[0] >= wave.shape[1] else wave.mean(axis=0)
    elif wave.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D (samples, channels), got shape {wave.shape}")
    return wave


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
        """Load CLAP and CLIP (Hub ids or local folders). Defaults: GPU if there is one, float32.

        float32 by default because scoring is cheap next to generation, and on CPU half precision is far
        slower (no bf16/fp16 hardware here). Extra keyword arguments go to the constructor (templates, batch sizes).
        """
        from transformers import ClapModel, ClapProcessor, CLIPModel, CLIPProcessor

        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        wave = _mono(np.asarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32))
        if wave.size == 0:
            raise ValueError("the audio has no samples: pass a sound (16 kHz mono float32, as align.audio.load_audio gives)")
        if sampling_rate != self.clap_rate:
            # soxr, the resampler align.audio uses; from the source rate directly so nothing above 8 kHz is lost.
            wave = soxr.resample(wave, sampling_rate, self.clap_rate)
        return np.ascontiguousarray(wave, dtype=np.float32)

    @torch.inference_mode()
    def embed_audio(self, audios: Sequence, sampling_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """(A, Da) unit CLAP audio embeddings. A clip longer than CLAP's window is cut into consecutive windows
        (the last ending at the clip's end) whose embeddings are averaged, so the whole sound counts and
        nothing is cropped at random. A shorter clip is repeat-padded by the feature extractor, as CLAP was trained."""
        windows, owner = [], []
        for a, audio in enumerate(audios):
            wave = self._prepare_audio(audio, sampling_rate)
            parts = [wave] if wave.shape[0] <= self.clap_window else split_windows(wave, self.clap_window, "all")
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

    def entry(self, index: int) -> str:
        """The vocabulary entry at `index` (e.g. to print `audio_top` / `image_top`)."""
        return self.vocabulary.entries[int(index)]
