"""The CLIP text states of a caption, as Stable Diffusion 2.1 encodes its prompts: what the audio encoder learns to
give (align.targets caches them as its training targets) and what the text path draws from (the pipeline's words,
the cascade baseline)."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_captions(captions: list[str], text_encoder, tokenizer) -> torch.Tensor:
    """CLIP `last_hidden_state` of each caption, padded to the tokenizer's 77 positions.

    No attention mask, as Stable Diffusion 2.1 encodes its prompts: every position, padding included,
    is what the UNet saw in training.
    """
    tokens = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(text_encoder.device)).last_hidden_state
