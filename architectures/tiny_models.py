"""Every model of the system in miniature, built from configs: the stand-ins for the real weights (never downloaded)
that the tests, the benchmarks and the notebook's smoke run share.

Shapes follow diffusers' and transformers' own tiny test components; every builder seeds torch so the same
call gives the same weights. What has no size is the real thing: the CLIP tokenizer (built offline,
architectures/clip_tokenizer.py), w2v-BERT's feature extractor and SD 2.1's noise schedule (`real_models.sd21_scheduler`).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig

from architectures.clap_tokenizer import clap_tokenizer
from architectures.clip_tokenizer import clip_tokenizer
from hearing.encoder import DEFAULT_NUM_AUDIO_TOKENS, AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings
from architectures.real_models import sd21_scheduler  # noqa: F401  (no size: the tiny pipeline samples with the real one)

TEXT_HIDDEN = 32  # stands for SD 2.1's 1024 (real_models.TEXT_HIDDEN)


def tiny_tokenizer() -> CLIPTokenizer:
    """The real CLIP tokenizer as SD 2.1 configures it (77 positions, padded with "!")."""
    return clip_tokenizer()


def tiny_text_encoder() -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=0, projection_dim=TEXT_HIDDEN,
        hidden_act="gelu",
    )
    return CLIPTextModel(config).eval()


def tiny_audio_encoder(num_audio_tokens: int = DEFAULT_NUM_AUDIO_TOKENS, empty_embedding: torch.Tensor | None = None) -> AudioPromptEncoder:
    torch.manual_seed(0)
    audio_config = adapter_settings(
        Wav2Vec2BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_depthwise_kernel_size=3),
        output_hidden_size=TEXT_HIDDEN,
    )
    encoder = AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=audio_config, num_audio_tokens=num_audio_tokens))
    if empty_embedding is not None:
        encoder.set_empty_embedding(empty_embedding)
    return encoder.eval()


def feature_extractor() -> SeamlessM4TFeatureExtractor:
    """w2v-BERT 2.0's feature extractor has no weights: the real one, built from its defaults."""
    return SeamlessM4TFeatureExtractor()


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
    ).eval()


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, sample_size=128,
    ).eval()


# Scoring (the CLAP + CLIP scorer): a tiny CLAP and a tiny CLIP with their real processors, built offline.


def tiny_clap_tokenizer():
    """A byte-level BPE RobertaTokenizer (CLAP's text tokenizer) with no merges: every byte is a token."""
    return clap_tokenizer(max_length=64)


def tiny_clap():
    """(ClapModel, ClapProcessor): unfused HTSAT, 16 mel bins, a 1 s window at the real 48 kHz."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tokenizer = tiny_clap_tokenizer()
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=48_000, max_length_s=1, truncation="rand_trunc")
    torch.manual_seed(0)
    config = ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=66, projection_dim=16),
        audio_config=dict(num_mel_bins=16, spec_size=64, window_size=4, patch_size=4, patch_stride=(4, 4), hidden_size=32,
                          patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2], projection_dim=16),
        projection_dim=16,
    )
    return ClapModel(config).eval(), ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def tiny_clip():
    """(CLIPModel, CLIPProcessor): 32 px ViT and the real CLIP tokenizer; the PIL image processor (no torchvision)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=tiny_tokenizer())
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16,
    )
    return CLIPModel(config).eval(), processor
