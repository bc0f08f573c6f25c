"""Stage: the world's CLIP learns the sound classes: new words for its frozen text tower, emoji for its image tower.

    python -m world.train_words --world data/world --clip runs/world/clip --out runs/world/words

The world's CLIP (world.train_clip) was trained on the 72 shape captions; its text tower is the pipeline's text
encoder, whose states the UNet draws from and the speech ears reproduce. The sound captions bring words it never saw
("dog", "barking", "thunder"), whose rows of the token-embedding table are still their random initial values: the tower
gives them distinct states, but close ones (the shipped tower: two sound captions up to cosine 0.986, while no two
shape captions pass 0.955). Retraining the tower would move every shape caption's states and the speech ears would
have to learn new targets; so only the new words' rows are trained, and the transformer and every row the shape
captions use stay frozen: the shape captions' states do not change at all (checked before saving). The image tower
and both projections train freely, so the scorer's CLIP learns to see the emoji.

Loss: CLIP's contrastive loss on batches of one picture of every caption (shapes and sounds; half the captions in the
scorer's prompt form, as world.train_clip), plus a uniformity term that pushes each sound caption's full state sequence
away from every other caption's (the UNet and the ears read all positions, not only the pooled one).
Writes `<out>/clip` (the scorer's CLIP), `<out>/text_encoder`, `<out>/tokenizer` and metrics.json with the
separation before and after.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTokenizer

from hearing.text_states import encode_captions
from world.images import WorldImages
from world.scenes import render_scene, sound_scenes, world_scenes
from world.stage import optimise, stage_parser, start_stage, update, write_json
from world.train_clip import SCORER_TEMPLATE, normalise, save_clip

TEMPERATURE = 0.05  # of the uniformity term


def flat_states(text_model, input_ids: torch.Tensor) -> torch.Tensor:
    """Each caption's states after the first position (the same for all), flattened and unit-normalised."""
    states = text_model(input_ids=input_ids).last_hidden_state[:, 1:]
    return F.normalize(states.reshape(len(states), -1), dim=-1)


@torch.no_grad()
def separation(text_model, input_ids: torch.Tensor, sounds: int) -> dict[str, float]:
    """The highest cosine between two captions' states: among the shape captions, and for the last `sounds` captions."""
    flat = flat_states(text_model, input_ids)
    similarity = (flat @ flat.T).fill_diagonal_(-1.0)
    return {"shape_max_cosine": round(float(similarity[:-sounds, :-sounds].max()), 4),
            "sound_max_cosine": round(float(similarity[-sounds:].max()), 4)}


@torch.no_grad()
def sound_retrieval(model: CLIPModel, input_ids: torch.Tensor, scenes: list[dict], renders: int = 4, seed: int = 1234) -> float:
    """Image → caption top-1 over every caption, on fresh renders of the sound classes: does the image tower see them?"""
    rng = np.random.default_rng(seed)
    sounds = [i for i, s in enumerate(scenes) if "sound" in s]
    pixels = torch.stack([torch.from_numpy(np.array(render_scene(scenes[i], rng))).permute(2, 0, 1) for _, i in itertools.product(range(renders), sounds)])
    text = F.normalize(model.get_text_features(input_ids=input_ids).pooler_output, dim=-1)
    image = F.normalize(model.get_image_features(pixel_values=normalise(pixels)).pooler_output, dim=-1)
    best = (image @ text.T).argmax(dim=1)
    return float((best == torch.tensor(sounds * renders)).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "words", steps=600)
    parser.add_argument("--clip", default="runs/world/clip", help="world.train_clip's output (its clip/: the model and processor)")
    parser.add_argument("--uniformity", type=float, default=1.0, help="weight of the uniformity term")
    args, out, log = start_stage(parser, argv)
    scenes = world_scenes()
    captions = [s["caption"] for s in scenes]
    sounds = len(sound_scenes())
    model = CLIPModel.from_pretrained(Path(args.clip) / "clip", use_safetensors=True, dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(Path(args.clip) / "clip")  # saved with the CLIP's processor
    ids = tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
    prompted_ids = tokenizer([SCORER_TEMPLATE.format(c) for c in captions], padding="max_length", truncation=True, return_tensors="pt").input_ids
    shapes = captions[:-sounds]
    known = {i for row in tokenizer(shapes + [SCORER_TEMPLATE.format(c) for c in shapes] + [""], padding="max_length").input_ids for i in row}
    new_rows = sorted({i for row in prompted_ids.tolist() + ids.tolist() for i in row} - known)
    text_model = model.text_model
    before = separation(text_model, ids, sounds)
    shape_states = encode_captions(shapes, text_model, tokenizer)
    images = WorldImages(args.world, captions)
    log(f"{len(new_rows)} new words in {sounds} sound captions; {len(images)} pictures; before: {before}")

    for parameter in text_model.parameters():  # the text tower is frozen but for the new words' rows of its table
        parameter.requires_grad_(False)
    table = text_model.get_input_embeddings().weight
    table.requires_grad_(True)
    only_new = torch.zeros(len(table), 1)
    only_new[new_rows] = 1.0
    table.register_hook(lambda grad: grad * only_new)  # the other rows get no gradient, so Adam leaves them exactly as they are
    reference_norm = table.detach()[sorted(known)].norm(dim=-1).mean()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer, budget, generator = optimise(trained, args, weight_decay=0.0)
    own = torch.arange(sounds)
    for step in budget.each_step(optimizer, args.lr):
        pixels = normalise(images.pixels[images.one_per_caption(generator)])
        prompted = torch.rand(len(captions), generator=generator) < 0.5
        clip_loss = model(input_ids=torch.where(prompted[:, None], prompted_ids, ids), pixel_values=pixels, return_loss=True).loss
        flat = flat_states(text_model, ids)
        similarity = flat[-sounds:] @ flat.T / TEMPERATURE
        similarity[own, len(shapes) + own] = float("-inf")
        uniformity = torch.logsumexp(similarity, dim=1).mean()
        update(optimizer, clip_loss + args.uniformity * uniformity, max_grad_norm=None)
        with torch.no_grad():  # the new rows as long as the trained ones: the tower's layer norms expect that scale
            table[new_rows] *= reference_norm / table[new_rows].norm(dim=-1, keepdim=True)
        if step % 100 == 0:
            log(f"step {step}/{args.steps} CLIP loss {clip_loss.item():.4f} uniformity {uniformity.item():.3f}")
    table.requires_grad_(False)
    model.eval()
    after = separation(text_model, ids, sounds)
    if not torch.equal(encode_captions(shapes, text_model, tokenizer), shape_states):
        raise RuntimeError("the shape captions' states changed: the speech ears' targets would no longer hold")
    metrics = {"new_words": len(new_rows), "before": before, "after": after, "shape_states_unchanged": True,
               "sound_image_to_caption": sound_retrieval(model, ids, scenes), "steps": budget.step, "seconds": round(log.elapsed, 1)}
    log(f"after: {after}; sound pictures → their caption {100 * metrics['sound_image_to_caption']:.0f} %; shape captions' states unchanged")
    save_clip(model, tokenizer, out)
    write_json(out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
