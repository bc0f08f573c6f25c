"""The audio prompt encoder: w2v-BERT 2.0 + its convolutional adapter, speaking CLIP's hidden states.

Output: (batch, 1 + num_audio_tokens, hidden). Position 0 is the CLIP BOS state: under CLIP's causal
attention it is the same vector for every caption, so the audio need not predict it. Positions 1.. come
from one audio window of `window_samples` samples (76 tokens → 77 positions by default, what the SD 2.1
UNet was trained on).

Optionally the encoder holds experts over the same sound: `audio_model`, the first (in the world, the ears that
learned speech), and `sound_model`, a second w2v-BERT with its own adapter (ears that learned everyday sounds),
mixed per clip by a router that reads the second expert's pooled hidden states and gives the first expert's
weight. Ears that must hear both kinds lose one to the other when a single backbone learns both (world/README.md
measures it); with two experts each keeps what it learned alone, and the router, a linear probe, only has to tell
speech from other sound. More experts may stand beside either (`extra_speech_models`, `extra_sound_models`): each
side's states are the mean of its experts' (two that hear the clip two ways err on different clips).

Each expert hears the features its config names: by default each clip normalised by its own frames per mel bin
(w2v-BERT's way, made for speech), or, where the expert's Wav2Vec2BertConfig carries `mel_statistics`, every clip
by those fixed per-bin statistics, which keeps a sound's spectral shape (hearing.features). `features` computes
what every expert needs; `forward` takes them.

The checkpoint also stores the CLIP encoding of the empty caption "" over the same positions, the
unconditional input for classifier-free guidance; its position 0 is the BOS state. (Causal attention again:
the first k positions of the 77-position encoding are the k-position encoding, so this holds for any
window.) With it the pipeline needs no text encoder at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import (
    PreTrainedConfig,
    PreTrainedModel,
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2BertModel,
)
from transformers.modeling_outputs import BaseModelOutput

from hearing.audio import fit_to_window, window_samples_for_tokens
from hearing.features import BatchedFeatureExtractor
from hearing.model_ids import DEFAULT_AUDIO_MODEL, ORIGINAL_CHECKPOINT, ORIGINAL_NUM_AUDIO_TOKENS

DEFAULT_NUM_AUDIO_TOKENS = 76  # + BOS = 77, the CLIP context length SD 2.1 was trained on


def mel_statistics(config: Wav2Vec2BertConfig) -> dict | None:
    """The fixed per-bin statistics an expert's features are normalised by (hearing.features), None for per clip."""
    return getattr(config, "mel_statistics", None)


def adapter_settings(config: Wav2Vec2BertConfig | None = None, **overrides) -> Wav2Vec2BertConfig:
    """A Wav2Vec2BertConfig set up for alignment: adapter on with 2 layers, and no layerdrop.

    The library defaults (`add_adapter=False`, `num_adapter_layers=1`, `layerdrop=0.1`) would drop whole
    adapter layers in training and change the output length at random.
    """
    config = config or Wav2Vec2BertConfig()
    config.add_adapter = True
    config.num_adapter_layers = overrides.pop("num_adapter_layers", 2)
    config.layerdrop = 0.0
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class AudioPromptEncoderConfig(PreTrainedConfig):
    model_type = "audio_prompt_encoder"
    sub_configs = {"audio_config": Wav2Vec2BertConfig, "sound_config": Wav2Vec2BertConfig}

    def __init__(self, audio_config: Wav2Vec2BertConfig | dict | None = None, num_audio_tokens: int = DEFAULT_NUM_AUDIO_TOKENS,
                 sound_config: Wav2Vec2BertConfig | dict | None = None, extra_sound_configs: list | None = None,
                 extra_speech_configs: list | None = None, **kwargs):
        if audio_config is None:
            audio_config = adapter_settings()
        elif isinstance(audio_config, dict):
            audio_config = Wav2Vec2BertConfig(**audio_config)
        if isinstance(sound_config, dict):
            sound_config = Wav2Vec2BertConfig(**sound_config)
        extra_sound_configs = [Wav2Vec2BertConfig(**c) if isinstance(c, dict) else c for c in extra_sound_configs or []]
        extra_speech_configs = [Wav2Vec2BertConfig(**c) if isinstance(c, dict) else c for c in extra_speech_configs or []]
        if extra_sound_configs and sound_config is None:
            raise ValueError("more sound experts stand beside the first one: give sound_config too")
        others = [("sound expert", sound_config), *(("sound expert", c) for c in extra_sound_configs),
                  *(("speech expert", c) for c in extra_speech_configs)]
        for name, config in (("audio model", audio_config), *others):
            if config is not None and not config.add_adapter:
                raise ValueError(f"the {name} needs its convolutional adapter (add_adapter=True); see hearing.encoder.adapter_settings")
        for name, config in others:
            if config is None:
                continue
            for field in ("output_hidden_size", "num_adapter_layers", "adapter_stride"):
                if getattr(config, field) != getattr(audio_config, field):
                    raise ValueError(f"a {name}'s {field} is {getattr(config, field)}, the audio model's {getattr(audio_config, field)}: "
                                     "every expert must give the same states over the same window")
        self.audio_config = audio_config
        self.sound_config = sound_config
        self.extra_sound_configs = extra_sound_configs
        self.extra_speech_configs = extra_speech_configs
        self.num_audio_tokens = num_audio_tokens
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.audio_config.output_hidden_size

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["extra_sound_configs"] = [c.to_dict() for c in self.extra_sound_configs]
        output["extra_speech_configs"] = [c.to_dict() for c in self.extra_speech_configs]
        return output

    @property
    def window_samples(self) -> int:
        return window_samples_for_tokens(self.num_audio_tokens, self.audio_config.num_adapter_layers, self.audio_config.adapter_stride)


class AudioPromptEncoder(PreTrainedModel):
    config_class = AudioPromptEncoderConfig
    base_model_prefix = "audio_prompt_encoder"
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Wav2Vec2BertEncoderLayer"]

    def __init__(self, config: AudioPromptEncoderConfig):
        super().__init__(config)
        self.audio_model = Wav2Vec2BertModel(config.audio_config)
        if config.sound_config is not None:
            self.sound_model = Wav2Vec2BertModel(config.sound_config)
            self.router = torch.nn.Linear(2 * config.sound_config.hidden_size, 1)
        else:
            self.sound_model = self.router = None
        self.extra_sound_models = torch.nn.ModuleList(Wav2Vec2BertModel(c) for c in config.extra_sound_configs)
        self.extra_speech_models = torch.nn.ModuleList(Wav2Vec2BertModel(c) for c in config.extra_speech_configs)
        self.register_buffer("empty_embedding", torch.zeros(self.sequence_length, config.hidden_size))
        self.post_init()

    @property
    def window_samples(self) -> int:
        return self.config.window_samples

    @property
    def sequence_length(self) -> int:
        return 1 + self.config.num_audio_tokens

    @property
    def bos_embedding(self) -> torch.Tensor:
        return self.empty_embedding[0]

    def set_empty_embedding(self, empty: torch.Tensor) -> None:
        """Store CLIP's encoding of "" (77 × hidden, as `TargetCache.empty_embedding` holds it)."""
        if empty.ndim != 2 or empty.shape[0] < self.sequence_length or empty.shape[1] != self.config.hidden_size:
            raise ValueError(
                f"the empty-caption encoding has shape {tuple(empty.shape)}; expected at least "
                f"({self.sequence_length}, {self.config.hidden_size}) from the text encoder the targets came from"
            )
        with torch.no_grad():
            self.empty_embedding.copy_(empty[: self.sequence_length].to(self.empty_embedding))

    @property
    def speech_experts(self) -> list[Wav2Vec2BertModel]:
        """The speech side's experts: the audio model first (the only one in a single-expert encoder)."""
        return [self.audio_model, *self.extra_speech_models]

    @property
    def sound_experts(self) -> list[Wav2Vec2BertModel]:
        """The sound side's experts, the one the router reads first (none in a single-expert encoder)."""
        return [] if self.sound_model is None else [self.sound_model, *self.extra_sound_models]

    def _expert_inputs(self, experts: list[Wav2Vec2BertModel], input_features: torch.Tensor, own_features: list | tuple | None) -> list[torch.Tensor]:
        """Each expert's features: its own from `own_features` (one entry per expert) where its statistics differ from
        the audio model's, else `input_features`."""
        inputs = []
        for i, expert in enumerate(experts):
            own = None if own_features is None else own_features[i]
            if own is None and mel_statistics(expert.config) != mel_statistics(self.config.audio_config):
                raise ValueError("an expert hears features normalised otherwise than the audio model's: "
                                 "compute them with AudioPromptEncoder.features and pass all it returns")
            inputs.append(input_features if own is None else own)
        return inputs

    def _mean_states(self, experts: list[Wav2Vec2BertModel], inputs: list[torch.Tensor], attention_mask: torch.Tensor | None,
                     first: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of the experts' states, each on its own features (`first`: the first expert's, already computed)."""
        states = first if first is not None else experts[0](inputs[0], attention_mask=attention_mask).last_hidden_state
        for expert, features in zip(experts[1:], inputs[1:]):
            states = states + expert(features, attention_mask=attention_mask).last_hidden_state
        return states / len(experts)

    def speech_states(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      speech_features: list | tuple | None = None) -> torch.Tensor:
        """The speech side's states: the mean of its experts'."""
        inputs = self._expert_inputs(self.speech_experts, input_features, speech_features)
        return self._mean_states(self.speech_experts, inputs, attention_mask)

    def expert_states(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      sound_features: list | tuple | None = None, speech_features: list | tuple | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The speech side's states, the sound side's (each the mean of its experts'), and what the router reads: the
        first sound expert's last encoder layer (before its adapter), its mean and standard deviation over the clip's
        frames. (Measured on the world: read there, a linear probe routed unheard voices and speech over music better
        than from the speech expert's layer or from both; world/README.md.)"""
        speech = self.speech_states(input_features, attention_mask, speech_features)
        inputs = self._expert_inputs(self.sound_experts, input_features, sound_features)
        second = self.sound_model(inputs[0], attention_mask=attention_mask, output_hidden_states=True)
        sound = self._mean_states(self.sound_experts, inputs, attention_mask, first=second.last_hidden_state)
        return speech, sound, self._pooled(second.hidden_states[-1], attention_mask)

    @staticmethod
    def _pooled(frames: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The mean and standard deviation of a layer's frames over the clip (the router's input)."""
        mask = torch.ones_like(frames[..., :1]) if attention_mask is None else attention_mask[:, : frames.shape[1], None].to(frames.dtype)
        count = mask.sum(1).clamp(min=1)
        mean = (frames * mask).sum(1) / count
        std = (((frames - mean[:, None]) ** 2 * mask).sum(1) / count).sqrt()
        return torch.cat([mean, std], dim=-1)

    def router_input(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     sound_features: list | tuple | None = None, **other_features) -> torch.Tensor:
        """What the router reads (expert_states' third part), running the first sound expert alone."""
        features = self._expert_inputs(self.sound_experts[:1], input_features, sound_features)[0]
        frames = self.sound_model(features, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]
        return self._pooled(frames, attention_mask)

    def first_expert_weight(self, pooled: torch.Tensor) -> torch.Tensor:
        """The router's weight of the audio model (the first expert) for each clip, in (0, 1)."""
        return torch.sigmoid(self.router(pooled)).squeeze(-1)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None, sound_features: list | tuple | None = None,
                speech_features: list | tuple | None = None, **kwargs) -> BaseModelOutput:
        """`input_features` as the audio model hears them; `sound_features` and `speech_features`, from `features`, one
        entry per sound or speech expert (None where it hears `input_features`)."""
        if self.sound_model is None:
            hidden = self.speech_states(input_features, attention_mask, speech_features)
        else:
            first, second, pooled = self.expert_states(input_features, attention_mask, sound_features, speech_features)
            weight = self.first_expert_weight(pooled).to(first.dtype)[:, None, None]
            hidden = weight * first + (1 - weight) * second
        tokens = self.config.num_audio_tokens
        if hidden.shape[1] != tokens:
            raise ValueError(
                f"the audio gave {hidden.shape[1]} tokens, the encoder expects {tokens}: "
                f"fit each clip to {self.window_samples} samples at 16 kHz first (AudioPromptEncoder.features)"
            )
        bos = self.bos_embedding.to(hidden.dtype).expand(hidden.shape[0], 1, -1)
        return BaseModelOutput(last_hidden_state=torch.cat([bos, hidden], dim=1))

    def features(self, waves: list[np.ndarray], feature_extractor: SeamlessM4TFeatureExtractor | BatchedFeatureExtractor, crop: str = "center",
                 rng: np.random.Generator | None = None, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> dict:
        """Mono 16 kHz waves → input features on `device`, each clip cropped or repeat-padded to the window: the
        audio model's (`input_features`), and where another expert hears them normalised otherwise, its own
        (`sound_features`, `speech_features`: one entry per expert of that side, None where it hears `input_features`);
        in `dtype` where given (the attention mask stays integer).

        The features are `feature_extractor`'s, computed for the whole batch in torch on the device
        (hearing.features: the same numbers as the library's numpy, within float32 rounding)."""
        windows = torch.from_numpy(np.stack([fit_to_window(w, self.window_samples, crop, rng) for w in waves])).to(device or "cpu")
        if not isinstance(feature_extractor, BatchedFeatureExtractor):
            feature_extractor = BatchedFeatureExtractor(feature_extractor)
        audio_statistics = mel_statistics(self.config.audio_config)
        batch = feature_extractor.with_statistics(audio_statistics)(windows)
        features = {"input_features": batch["input_features"], "attention_mask": batch["attention_mask"]}
        for side, experts in (("speech_features", self.speech_experts), ("sound_features", self.sound_experts)):
            statistics = [mel_statistics(expert.config) for expert in experts]
            if any(s != audio_statistics for s in statistics):
                features[side] = [None if s == audio_statistics else feature_extractor.with_statistics(s)(windows)["input_features"]
                                  for s in statistics]
        if dtype is not None:
            features["input_features"] = features["input_features"].to(dtype)
            for side in ("speech_features", "sound_features"):
                if side in features:
                    features[side] = [None if f is None else f.to(dtype) for f in features[side]]
        return features

    @classmethod
    def from_audio_model(cls, audio_model: Wav2Vec2BertModel, num_audio_tokens: int, empty_embedding: torch.Tensor | None = None) -> "AudioPromptEncoder":
        """Wrap a Wav2Vec2BertModel that already has its adapter (e.g. the public original checkpoint)."""
        config = AudioPromptEncoderConfig(audio_config=adapter_settings(audio_model.config), num_audio_tokens=num_audio_tokens)
        encoder = cls(config)
        encoder.audio_model.load_state_dict(audio_model.state_dict())
        if empty_embedding is not None:
            encoder.set_empty_embedding(empty_embedding)
        return encoder

    @classmethod
    def from_experts(cls, speech: list["AudioPromptEncoder"], sounds: list["AudioPromptEncoder"]) -> "AudioPromptEncoder":
        """Trained single-expert encoders of the same window and text tower as one: `speech` hear speech, `sounds` hear
        sounds (each side's states averaged), with an untrained router that reads the first sound expert (weight 0: the
        two sides mixed half and half until it is trained, world.route_ears)."""
        if not speech or not sounds:
            raise ValueError("give at least one speech expert and one sound expert")
        experts = (*speech, *sounds)
        if any(e.sound_model is not None or e.extra_speech_models for e in experts):
            raise ValueError("give single-expert encoders: one of them already has more than one expert")
        first, second, more = speech[0], sounds[0], sounds[1:]
        for other in experts[1:]:
            if first.config.num_audio_tokens != other.config.num_audio_tokens:
                raise ValueError(f"the experts hear windows of {first.config.num_audio_tokens} and {other.config.num_audio_tokens} tokens: train them on the same window")
            # float16 storage rounds the same encoding by up to 1e-3 of its largest value
            if not torch.allclose(first.empty_embedding.float(), other.empty_embedding.float(), atol=2e-3 * float(first.empty_embedding.abs().max()), rtol=0):
                raise ValueError("the experts store different empty-caption encodings: they were trained against different text encoders")
        config = AudioPromptEncoderConfig(audio_config=first.config.audio_config, sound_config=second.config.audio_config,
                                          extra_sound_configs=[e.config.audio_config for e in more],
                                          extra_speech_configs=[e.config.audio_config for e in speech[1:]], num_audio_tokens=first.config.num_audio_tokens)
        encoder = cls(config).to(first.empty_embedding.dtype)
        for expert, trained in zip([*encoder.speech_experts, *encoder.sound_experts], experts):
            expert.load_state_dict(trained.audio_model.state_dict())
        encoder.empty_embedding.copy_(first.empty_embedding)
        with torch.no_grad():
            encoder.router.weight.zero_()
            encoder.router.bias.zero_()
        return encoder

    @classmethod
    def from_w2v_bert(cls, model_id: str = DEFAULT_AUDIO_MODEL, text_hidden_size: int = 1024, num_audio_tokens: int = DEFAULT_NUM_AUDIO_TOKENS, empty_embedding: torch.Tensor | None = None, **load_kwargs) -> "AudioPromptEncoder":
        """A fresh encoder to train: pretrained w2v-BERT 2.0 weights, a newly initialised adapter."""
        audio_config = adapter_settings(Wav2Vec2BertConfig.from_pretrained(model_id, **load_kwargs), output_hidden_size=text_hidden_size)
        audio_model = Wav2Vec2BertModel.from_pretrained(model_id, config=audio_config, use_safetensors=True, **load_kwargs)
        return cls.from_audio_model(audio_model, num_audio_tokens, empty_embedding)


def load_audio_encoder(path: str | Path, num_audio_tokens: int | None = None, empty_embedding: torch.Tensor | None = None, **load_kwargs) -> AudioPromptEncoder:
    """Load a trained encoder: this project's checkpoint, or a plain Wav2Vec2BertModel + adapter checkpoint.

    The plain layout (the public original, `youzarsif/wav2vec2bert_2_diffusion`) stores neither the window
    nor the empty-caption encoding: `num_audio_tokens` defaults to the original's 47, and `empty_embedding`
    should be the base model's CLIP encoding of "" (the pipeline assembly passes it).
    """
    try:
        config = PreTrainedConfig.get_config_dict(str(path), **load_kwargs)[0]
    except OSError as error:
        raise FileNotFoundError(
            f"no audio encoder at {path!r}: give the folder written by `python -m align.train` (it holds config.json "
            f"and model.safetensors) or a Hub id such as {ORIGINAL_CHECKPOINT!r}"
        ) from error
    model_type = config.get("model_type")
    if model_type == AudioPromptEncoderConfig.model_type:
        encoder = AudioPromptEncoder.from_pretrained(path, use_safetensors=True, **load_kwargs)
        if num_audio_tokens is not None and num_audio_tokens != encoder.config.num_audio_tokens:
            raise ValueError(f"{path} was trained with {encoder.config.num_audio_tokens} audio tokens, not {num_audio_tokens}")
        return encoder
    if model_type == "wav2vec2-bert":
        audio_config = adapter_settings(Wav2Vec2BertConfig.from_pretrained(path, **load_kwargs), num_adapter_layers=config.get("num_adapter_layers", 2))
        if not config.get("add_adapter", False):
            raise ValueError(f"{path} is a Wav2Vec2BertModel without the adapter: it was not trained to give CLIP states")
        audio_model = Wav2Vec2BertModel.from_pretrained(path, config=audio_config, use_safetensors=True, **load_kwargs)
        return AudioPromptEncoder.from_audio_model(audio_model, num_audio_tokens or ORIGINAL_NUM_AUDIO_TOKENS, empty_embedding)
    raise ValueError(f"{path} holds a {model_type!r} model; expected an audio prompt encoder or a wav2vec2-bert model with adapter")
