"""Stage: a small CLIP (text tower + image tower) trained contrastively on the world's captioned pictures.

    python -m world.train_clip --world data/world --out runs/world/clip --steps 600

Why first, and on its own: the UNet is conditioned on this text tower's hidden states, and the audio
encoder learns to reproduce them. A text encoder trained jointly with the UNet encodes only what the UNet
happens to use (captions differing only in position came out nearly identical); trained against an image
tower, it must tell every caption apart, so every caption gets distinct targets. It is then frozen.

Each batch holds one picture of every caption, so no two items share a caption and the plain symmetric
CLIP loss has no false negatives. Half the captions are read as "a photo of <caption>", the prompt the
project's scorer (generate.scoring) puts to CLIP, so the scorer's CLIP understands both forms. Writes `<out>/clip` (CLIPModel + CLIPProcessor, the scorer's CLIP),
`<out>/text_encoder` (CLIPTextModel, the pipeline's) and `<out>/tokenizer`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from world.checker import ATTRIBUTES
from world.images import WorldImages
from world.scenes import all_scenes, render
from world.scenes import IMAGE_SIZE
from world.settings import TEXT_HIDDEN, TEXT_LENGTH, world_tokenizer
from world.stage import write_json, optimise, stage_parser, start_stage, update

SCORER_TEMPLATE = "a photo of {}"  # generate.scoring's DEFAULT_IMAGE_TEMPLATE


def make_clip(seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    text = CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=TEXT_LENGTH, bos_token_id=49406,
                          eos_token_id=49407, pad_token_id=0, projection_dim=TEXT_HIDDEN)
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=4, hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                              num_attention_heads=4, projection_dim=TEXT_HIDDEN)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=TEXT_HIDDEN))


def image_processor() -> CLIPImageProcessorPil:
    """CLIP's preprocessing at the world's size, what the scorer applies to generated pictures (Pillow backend: no torchvision)."""
    return CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                              image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) → CLIP's normalised input (the same as `image_processor()` at the world's size)."""
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


@torch.no_grad()
def retrieval(model: CLIPModel, input_ids: torch.Tensor, scenes: list[dict], renders: int = 4, seed: int = 1234) -> dict[str, float]:
    """Image → caption top-1 on fresh renders, per attribute: does the image tower see what the text says?"""
    model.eval()
    rng = np.random.default_rng(seed)
    pixels = torch.stack([torch.from_numpy(np.array(render(s["shape"], s["colour"], s["position"], rng))).permute(2, 0, 1)
                          for _, s in itertools.product(range(renders), scenes)])
    truth = list(range(len(scenes))) * renders
    text = torch.nn.functional.normalize(model.get_text_features(input_ids=input_ids).pooler_output, dim=-1)
    image = torch.nn.functional.normalize(model.get_image_features(pixel_values=normalise(pixels)).pooler_output, dim=-1)
    best = (image @ text.T).argmax(dim=1).tolist()
    model.train()
    out = {key: float(np.mean([scenes[b][key] == scenes[t][key] for b, t in zip(best, truth)])) for key in ATTRIBUTES}
    out["caption"] = float(np.mean([b == t for b, t in zip(best, truth)]))
    return out


@torch.no_grad()
def state_separation(text_encoder: CLIPTextModel, input_ids: torch.Tensor) -> float:
    """The smallest distance between two captions' full state sequences, relative to their typical distance.

    Near 0 would mean two captions give (almost) the same condition: the UNet and the audio encoder could
    not tell them apart.
    """
    states = text_encoder(input_ids=input_ids).last_hidden_state.flatten(1)
    distances = torch.cdist(states, states, compute_mode="donot_use_mm_for_euclid_dist")
    off = distances[~torch.eye(len(states), dtype=torch.bool)]
    return float(off.min() / off.median())


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "clip", steps=600)
    args, out, log = start_stage(parser, argv)
    scenes = all_scenes()
    captions = [s["caption"] for s in scenes]
    images = WorldImages(args.world, captions)
    tokenizer = world_tokenizer()
    input_ids = tokenizer(captions, padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt").input_ids
    prompted_ids = tokenizer([SCORER_TEMPLATE.format(c) for c in captions], padding="max_length", max_length=TEXT_LENGTH,
                             truncation=True, return_tensors="pt").input_ids
    model = make_clip(args.seed).train()
    optimizer, budget, generator = optimise(model.parameters(), args, weight_decay=0.05)
    log(f"CLIP: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {len(images)} pictures, {len(captions)} captions")
    for step in budget.each_step(optimizer, args.lr):
        pixels = normalise(images.pixels[images.one_per_caption(generator)])
        prompted = torch.rand(len(captions), generator=generator) < 0.5
        ids = torch.where(prompted[:, None], prompted_ids, input_ids)
        loss = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        update(optimizer, loss, max_grad_norm=None)
        if step % 100 == 0:
            log(f"step {step}/{args.steps} loss {loss.item():.4f}")
    model.eval()
    metrics = {"retrieval": retrieval(model, input_ids, scenes), "state_separation": state_separation(text_tower(model), input_ids),
               "seconds": round(log.elapsed, 1), "steps": budget.step}
    log(f"image → caption on fresh renders: {metrics['retrieval']}; closest pair of captions' states at "
        f"{metrics['state_separation']:.2f} of the median distance")
    save_clip(model, tokenizer, out)
    write_json(out / "metrics.json", metrics)
    return metrics


def text_tower(model: CLIPModel) -> CLIPTextModel:
    """The CLIP's text tower as a CLIPTextModel of its own: the pipeline's text encoder."""
    text_encoder = CLIPTextModel(model.config.text_config)
    text_encoder.load_state_dict(model.text_model.state_dict())  # transformers 5: CLIPModel.text_model is a CLIPTextModel
    return text_encoder.eval()


def save_clip(model: CLIPModel, tokenizer, out) -> None:
    """What a CLIP stage leaves: <out>/clip (model + processor, the scorer's CLIP), <out>/text_encoder, <out>/tokenizer."""
    model.save_pretrained(out / "clip")
    CLIPProcessor(image_processor=image_processor(), tokenizer=tokenizer).save_pretrained(out / "clip")
    text_tower(model).save_pretrained(out / "text_encoder")
    tokenizer.save_pretrained(out / "tokenizer")


if __name__ == "__main__":
    main()
