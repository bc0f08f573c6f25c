"""Stage: a small VAE (diffusers AutoencoderKL, SD's class) that maps 32×32 pictures to 8×8×4 latents.

    python -m world.train_vae --world data/world --out runs/world/vae --steps 3000
    python -m world.train_vae --world data/world --out runs/world/vae_sounds --init models/world/pipeline/vae --steps 1000

The UNet then works on latents, as Stable Diffusion does. Two downsamplings (32 → 8) leave a latent whose
every cell the UNet's 8 → 4 → 2 levels can relate to every other, so position is learnt without
coordinate channels (a pixel-space UNet at 32×32 kept position at chance). Loss: reconstruction (L1 + MSE)
and a small KL term, as SD's VAE uses, which keeps the latent smooth enough to sample from. At the end the
latent's scaling factor is set so that scaled latents have unit variance (SD's 0.18215 plays this part).
The checker grades the reconstructions: a VAE that loses colour, shape or position caps everything after.
Batches draw the shape pictures and the sound pictures half and half. With --init, training goes on from a finished
VAE (the sounds stage: a VAE trained on shapes alone reconstructs an emoji as a blob of a shape's colour).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from world.checker import accuracy
from world.images import WorldImages
from world.scenes import IMAGE_SIZE, world_scenes
from world.stage import write_json, optimise, stage_parser, start_stage, update

KL_WEIGHT = 1e-5


def make_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=16, sample_size=IMAGE_SIZE,
    )


def to_images(decoded: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (B, 3, H, W) → uint8 (B, H, W, 3) for the checker."""
    return ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def latent_statistics(vae: AutoencoderKL, images: WorldImages, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Every picture's posterior mean and std (N, 4, 8, 8): the UNet stage samples latents from them."""
    means, stds = [], []
    for start in range(0, len(images), batch):
        posterior = vae.encode(images.to_unit(images.pixels[start : start + batch])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "vae", steps=3000, batch_size=64)
    parser.add_argument("--init", default=None, help="start from this finished VAE folder instead of a fresh one")
    args, out, log = start_stage(parser, argv)
    scenes = world_scenes()
    images = WorldImages(args.world, [s["caption"] for s in scenes])
    vae = (AutoencoderKL.from_pretrained(args.init, use_safetensors=True, dtype=torch.float32) if args.init else make_vae(args.seed)).train()
    weights = images.kind_weights(scenes)
    optimizer, budget, generator = optimise(vae.parameters(), args, weight_decay=0.0)
    log(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M parameters, {len(images)} pictures")
    for step in budget.each_step(optimizer, args.lr):
        x = images.to_unit(images.pixels[torch.multinomial(weights, args.batch_size, replacement=True, generator=generator)])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + KL_WEIGHT * kl
        update(optimizer, loss)
        if step % 250 == 0:
            log(f"step {step}/{args.steps} reconstruction {rec.item():.4f} kl {kl.item():.3f}")
    vae.eval()
    means, stds = latent_statistics(vae, images)
    scaling = 1.0 / float(means.std())
    vae.register_to_config(scaling_factor=scaling)
    with torch.no_grad():  # the checker on reconstructions of a picture of every caption, four times over
        pick = torch.cat([images.one_per_caption(generator) for _ in range(4)])
        recon = vae.decode(means[pick]).sample
    truth = [scenes[i] for i in images.caption_ids[pick].tolist()]
    metrics = {"reconstruction_checker": accuracy(list(to_images(recon).numpy()), truth),
               "reconstruction_l1": float(F.l1_loss(recon, images.to_unit(images.pixels[pick]))),
               "scaling_factor": scaling, "seconds": round(log.elapsed, 1), "steps": budget.step}
    log(f"reconstructions judged by the checker: {metrics['reconstruction_checker']}; scaling factor {scaling:.4f}")
    vae.save_pretrained(out / "vae")
    save_file({"mean": means.contiguous(), "std": stds.contiguous(), "caption_ids": images.caption_ids.contiguous()}, out / "latents.safetensors")
    write_json(out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
