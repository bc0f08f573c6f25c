"""Stable Diffusion 2.1 and w2v-BERT 2.0 at their real sizes, built from configs with random weights.

The configs are those of the files the real models load from (`hearing.model_ids.DEFAULT_BASE_MODEL`:
unet/, vae/, text_encoder/ and scheduler/ config.json; `DEFAULT_AUDIO_MODEL` = `Wav2Vec2BertConfig()`'s
defaults), so a benchmark measures the real cost without downloading anything:

    UNet 866M · VAE 84M · text encoder 340M (OpenCLIP ViT-H/14's text tower, 23 of its 24 layers) · w2v-BERT 2.0 + adapter 631M

Each builder seeds torch, so the same call gives the same weights.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, Wav2Vec2BertConfig

from hearing.encoder import DEFAULT_NUM_AUDIO_TOKENS, AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings

TEXT_HIDDEN = 1024  # the width of SD 2.1's text states: the UNet's cross_attention_dim and the audio encoder's output


def sd21_text_encoder_config() -> CLIPTextConfig:
    """SD 2.1's text_encoder/config.json as transformers loads it.

    `projection_dim` 512 and the special-token ids 0/2/1 are what the file says. Neither changes
    `last_hidden_state`: CLIPTextModel has no projection layer, and the ids only pick the pooled position
    (eos 2 means "the highest token id", which is CLIP's end of text, 49407).
    """
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


def sd21_text_encoder() -> CLIPTextModel:
    torch.manual_seed(0)
    return CLIPTextModel(sd21_text_encoder_config()).eval()


def sd21_unet() -> UNet2DConditionModel:
    """SD 2.1's 768 px v-prediction UNet (96×96 latents)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=96, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, upcast_attention=True,
    ).eval()


def sd21_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768,
    ).eval()


def sd21_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ with SD 2.1's noise schedule (scaled linear betas, v-prediction). A schedule has no size:
    the tiny models use it too."""
    return DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading", steps_offset=1,
    )


def w2v_bert_audio_config() -> Wav2Vec2BertConfig:
    """w2v-BERT 2.0 (24 conformer layers, hidden 1024) with the alignment adapter, emitting SD 2.1's width."""
    return adapter_settings(Wav2Vec2BertConfig(), output_hidden_size=TEXT_HIDDEN)


def w2v_bert_audio_encoder(num_audio_tokens: int = DEFAULT_NUM_AUDIO_TOKENS) -> AudioPromptEncoder:
    torch.manual_seed(0)
    return AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=w2v_bert_audio_config(), num_audio_tokens=num_audio_tokens)).eval()
