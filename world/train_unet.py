"""Stage: a text-conditioned UNet (diffusers UNet2DConditionModel, SD's class) on the VAE's 8×8×4 latents.

    python -m world.train_unet --world data/world --clip runs/world/clip --vae runs/world/vae --out runs/world/unet --steps 6000
    python -m world.train_unet --clip runs/world/clip --vae runs/world/vae --out runs/world/sharpen \
        --init runs/world/unet/unet --lr 3e-4 --minutes 15     # a second, gentler cosine cycle from a finished UNet

The condition is the frozen world text encoder's `last_hidden_state` over all 39 positions, as SD 2.1 feeds
its UNet; 10 % of captions are replaced by "" so classifier-free guidance has an unconditional model.
v-prediction (SD 2.1's) on a cosine noise schedule: at 8×8 a picture survives much more noise than at SD's
64×64, and SD's scaled-linear schedule would spend most steps where the scene is already decided. The
EMA weights (diffusers' `EMAModel`) are the ones saved. Writes `<out>/unet` and `<out>/scheduler`
(DPM-Solver++ with the training schedule, what the pipeline samples with). With --init, training starts from a
finished UNet (its saved EMA weights) with a fresh optimizer, EMA and learning-rate cycle: world.rebuild's sharpen
stage, because the first cycle, cut by its time cap, drew some squares with corners round enough to read as circles.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from hearing.text_states import encode_captions
from world.images import kind_weights
from world.scenes import world_scenes
from world.settings import TEXT_HIDDEN
from world.stage import write_json, optimise, stage_parser, start_stage, update

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}
CAPTION_DROPOUT = 0.1


def make_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 128, 128), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, norm_num_groups=32,
    )


def inference_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ over the training schedule; trailing spacing so sampling starts from pure noise."""
    return DPMSolverMultistepScheduler(**SCHEDULE, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing")


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "unet", steps=6000, batch_size=64, world=False)
    parser.add_argument("--clip", default="runs/world/clip", help="the CLIP stage's output (text_encoder/, tokenizer/)")
    parser.add_argument("--vae", default="runs/world/vae", help="the VAE stage's output (vae/, latents.safetensors)")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--init", default=None, help="start from this finished UNet folder (a run's unet/) instead of a fresh one")
    args, out, log = start_stage(parser, argv)
    scenes = world_scenes()
    captions = [s["caption"] for s in scenes]
    text_encoder = CLIPTextModel.from_pretrained(Path(args.clip) / "text_encoder", use_safetensors=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(Path(args.clip) / "tokenizer")
    states = encode_captions(captions, text_encoder, tokenizer)  # (72, 39, 64), frozen: computed once
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    latents = load_file(Path(args.vae) / "latents.safetensors")
    scaling = AutoencoderKL.load_config(Path(args.vae) / "vae")["scaling_factor"]
    means, stds, caption_ids = latents["mean"].float(), latents["std"].float(), latents["caption_ids"]
    weights = kind_weights(caption_ids, scenes)
    noise_scheduler = DDPMScheduler(**SCHEDULE)
    unet = (UNet2DConditionModel.from_pretrained(args.init, use_safetensors=True, dtype=torch.float32) if args.init else make_unet(args.seed)).train()
    ema = EMAModel(unet.parameters(), decay=args.ema_decay)  # decay 0 at update 1, then (1 + n) / (10 + n) at update n + 1, capped
    optimizer, budget, generator = optimise(unet.parameters(), args, weight_decay=0.01)
    log(f"UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters on {tuple(means.shape[1:])} latents, "
        f"{len(means)} pictures, scaling factor {scaling:.4f}")
    running = None
    for step in budget.each_step(optimizer, args.lr):
        pick = torch.multinomial(weights, args.batch_size, replacement=True, generator=generator)
        x0 = (means[pick] + stds[pick] * torch.randn(means[pick].shape, generator=generator)) * scaling
        condition = states[caption_ids[pick]]
        drop = torch.rand(args.batch_size, generator=generator) < CAPTION_DROPOUT
        condition = torch.where(drop[:, None, None], empty.expand_as(condition), condition)
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        target = noise_scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=condition).sample, target)
        update(optimizer, loss)
        ema.step(unet.parameters())
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 250 == 0:
            log(f"step {step}/{args.steps} loss {running:.4f} ({step * args.batch_size / log.elapsed:.0f} latents/s)")
    ema.copy_to(unet.parameters())  # the trained UNet becomes its average (EMAModel.save_pretrained would add its state to config.json)
    unet.eval().save_pretrained(out / "unet")
    inference_scheduler().save_pretrained(out / "scheduler")
    metrics = {"seconds": round(log.elapsed, 1), "steps": budget.step, "final_loss": running}
    write_json(out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
