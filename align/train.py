"""Train the audio prompt encoder to give, token by token, the CLIP text states Stable Diffusion 2.1 reads.

Read top to bottom: arguments, accelerator, data, targets (computed once, then the text encoder is freed),
encoder and what trains, optimizer and schedule, resume, the loop, the final save.

Launch (copy-paste):

    # one CPU: a smoke run on synthetic data (fp32; bf16 is far slower on CPUs without bf16 hardware)
    python -m world.synthetic_data --out data/synthetic
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

    # a corpus larger than the disk: WebDataset tar shards (local or URLs), or a Hub dataset, streamed (see align/streaming.py)
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 -m align.train \
        --shards 'https://host/wavcaps/shard-{000000..000511}.tar' --eval-shards 'https://host/wavcaps/eval-000000.tar' \
        --shuffle-buffer 2000 --max-train-steps 50000 --num-workers 4 --output-dir runs/wavcaps --checkpointing-steps 1000
    accelerate launch ... -m align.train --dataset <user>/audiocaps --streaming --max-train-steps 20000 ...

    # two machines of 8 GPUs: the same command on each, with its --machine_rank (0, 1) and machine 0's address
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 --main_process_ip 10.0.0.1 \
        --main_process_port 29500 --mixed_precision bf16 -m align.train ...

    # 2 CPU processes over gloo (tests/test_multiprocess.py): `accelerate launch --cpu` starts ONE process whatever
    # --num_processes says; use torchrun (or accelerate launch --multi_gpu) and the script's --cpu
    python -m torch.distributed.run --nproc_per_node 2 -m align.train --cpu ...

    # continue a run that stopped (or was killed): same command + --resume-from-checkpoint latest
    # (a streaming run continues with the sample after its checkpoint: same processes and --num-workers)
    ... --resume-from-checkpoint latest

    # LoRA or adapter-only fine-tuning of an already aligned encoder
    python -m align.train --audio-model runs/fsd50k/final --train-mode lora --learning-rate 1e-4 ...

What a run writes under --output-dir:

    final/                        the trained AudioPromptEncoder (config.json, model.safetensors, preprocessor_config.json);
                                  LoRA is merged in; load it with hearing.encoder.load_audio_encoder("<output-dir>/final")
    checkpoints/checkpoint-<step>/ accelerate state (weights, optimizer, scheduler, RNG) + trainer_state.json
                                  (+ stream_state-<process>.json when streaming: each process's position in the stream)
    metrics.json                  held-out cosine, mse, R@1/5/10 at step 0, every --eval-steps, and at the end
    log.jsonl                     one line of training loss, learning rate, speed and skipped items every --logging-steps
    args.json                     the arguments of the run
    samples-rank<r>.jsonl         with --record-samples (streaming): the keys of the samples each optimizer step used
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import (
    CLIPTextModel,
    CLIPTokenizer,
    PreTrainedConfig,
    SeamlessM4TFeatureExtractor,
    get_scheduler,
)

from hearing.audio import DEFAULT_MAX_SECONDS
from align.augment import FeatureAugment
from align.checkpoints import TRAINER_STATE, checkpoint_to_resume, keep_lines_until, save_checkpoint
from align.data import DEFAULT_CAPTION_TEMPLATE, AudioCaptionCollator, DataError, empty_batch, features_on_device
from hearing.device import cpu_has_bf16
from hearing.encoder import (
    DEFAULT_NUM_AUDIO_TOKENS,
    AudioPromptEncoder,
    AudioPromptEncoderConfig,
    load_audio_encoder,
    mel_statistics,
)
from hearing.features import BatchedFeatureExtractor
from align.loss import CONTRAST_LEVELS, DEFAULT_CONTRAST_LEVEL, DEFAULT_MSE_WEIGHT, AlignmentLoss, loss_for_backward
from align.metrics import evaluate
from align.model_card import DEFAULT_LICENSE, write_model_card
from hearing.model_ids import DEFAULT_AUDIO_MODEL, DEFAULT_BASE_MODEL
from align.targets import TargetCache
from align.training_data import TrainingData

logger = logging.getLogger("align.train")

LORA_TARGETS = ["linear_q", "linear_k", "linear_v", "linear_out", "intermediate_dense", "output_dense"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m align.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data (one of --data-dir, --dataset or --shards)")
    data.add_argument("--data-dir", help="local audiofolder: <dir>/train/ and <dir>/test/ (or one folder) holding audio files and metadata.jsonl or metadata.csv")
    data.add_argument("--dataset", help="a `datasets` Hub id (AudioCaps, Clotho, WavCaps, FSD50K style); audio is decoded with soundfile, not torchcodec")
    data.add_argument("--shards", nargs="+", help="WebDataset tar shards to stream (local paths or URLs, brace patterns: "
                      "'data/shard-{000000..000127}.tar'); a sample is key.wav/.flac/.mp3/... + key.txt or key.json (caption, text or labels)")
    data.add_argument("--streaming", action="store_true", help="stream --dataset from the Hub instead of downloading it (for corpora larger than the disk); --shards always stream")
    data.add_argument("--shuffle-buffer", type=int, default=1000, help="streaming: items held in the shuffle buffer (audio bytes, decoded when drawn); a resumed run rebuilds it exactly")
    data.add_argument("--eval-shards", nargs="+", help="streaming: tar shards of held-out data; their first --max-eval-items pairs are evaluated (with --dataset --streaming: --eval-split, or test/validation)")
    data.add_argument("--record-samples", action="store_true", help="streaming: write the key of every training sample used to samples-rank<r>.jsonl (audits data order; a resume trims it to the checkpoint)")
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
    data.add_argument("--features-on", choices=["auto", "loader", "device"], default="auto",
                      help="where training features (the w2v-BERT filterbank, and augmentation) are computed: loader: in the DataLoader "
                           "workers; device: batched in torch on the training device after the batch arrives; auto (default): device on a GPU, loader on a CPU")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding audio and computing features (streaming: each reads its own shards; resume with the same number)")

    augment = parser.add_argument_group("augmentation (training clips only; align/augment.py)")
    augment.add_argument("--warp-frequencies", type=float, default=0.0, help="augmentation: scale each training clip's frequency axis by a factor from [1-W, 1+W] (vocal tract length perturbation: other voices); 0 = off, 0.1-0.2 typical")
    augment.add_argument("--freq-masks", type=int, default=0, help="augmentation: mask this many bands of mel bins in each training clip (SpecAugment); 0 = off. Time masks come from the model config's mask_time_prob")
    augment.add_argument("--freq-mask-bins", type=int, default=10, help="each frequency mask at most this many of the 80 mel bins wide")
    augment.add_argument("--random-eq", type=float, default=0.0, help="augmentation: tilt each training clip's spectrum and raise or lower one band by up to "
                         "this many dB (another microphone or mastering); heard only by an encoder with fixed mel statistics; 0 = off")

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
    train.add_argument("--contrast-level", default=DEFAULT_CONTRAST_LEVEL, choices=CONTRAST_LEVELS,
                       help="contrast whole sequences (a pair's mean per-token cosine, what retrieval ranks by), each token on its own, or both averaged")
    train.add_argument("--mse-weight", type=float, default=DEFAULT_MSE_WEIGHT, help="weight of the MSE term that keeps vector magnitudes right (the UNet reads raw vectors); "
                       "at 1.0 it pulls every clip toward the captions' mean state first and retrieval starts late (bench/original_recipe.py)")
    train.add_argument("--extra-negatives", type=int, default=0, help="cached caption targets added as extra negatives to each step (audio → text direction)")
    train.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="autocast precision (default: accelerate's config, else no). On CPU only bf16, "
                       "and only with bf16 hardware (hearing.device.cpu_has_bf16; bench/cpu_precision.py measures the gain); otherwise fp32")
    train.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward: less memory, ~30%% slower")
    train.add_argument("--seed", type=int, default=0, help="seed for data order, crops, negatives and initialisation")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")

    run = parser.add_argument_group("checkpoints and logging")
    run.add_argument("--checkpointing-steps", type=int, default=500, help="save a resumable checkpoint every N optimizer steps; 0 = never")
    run.add_argument("--checkpoints-total-limit", type=int, help="keep only the newest N checkpoints")
    run.add_argument("--resume-from-checkpoint", help="'latest' (the newest checkpoint in <output-dir>/checkpoints, or a fresh start if none) or a checkpoint folder")
    run.add_argument("--logging-steps", type=int, default=10, help="print and log training figures every N optimizer steps")
    run.add_argument("--eval-steps", type=int, default=500, help="evaluate on held-out data every N optimizer steps (always at step 0 and at the end); 0 = only then")
    run.add_argument("--hub-model-id", default=None, help="with --push-to-hub: the Hub repo to upload final/ to (owner/name)")
    run.add_argument("--push-to-hub", action="store_true", help="upload final/ (weights, feature extractor, model card) to --hub-model-id")
    run.add_argument("--card-license", default=DEFAULT_LICENSE, help="license named in final/README.md, the model card (default: %(default)s)")
    run.add_argument("--report-to", default="none", help="accelerate trackers as well as log.jsonl: tensorboard, wandb, all, or none")
    args = parser.parse_args(argv)
    if sum(source is not None for source in (args.data_dir, args.dataset, args.shards)) != 1:
        parser.error("give exactly one data source: --data-dir (a local audiofolder), --dataset (a Hub dataset id) or --shards (tar shards)")
    if args.streaming and args.dataset is None:
        parser.error("--streaming streams a --dataset; --shards always stream, and a --data-dir is read from disk")
    args.streaming = args.streaming or args.shards is not None
    if args.streaming and not args.max_train_steps:
        parser.error("a stream has no known length: give --max-train-steps (epochs still count, as passes over the stream)")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push-to-hub needs --hub-model-id owner/name")
    if args.eval_shards and not args.shards:
        parser.error("--eval-shards goes with --shards")
    if args.gradient_accumulation_steps < 1 or args.train_batch_size < 1:
        parser.error("--train-batch-size and --gradient-accumulation-steps must be at least 1")
    try:  # the augmentation's bounds, checked before any model loads
        FeatureAugment(args.warp_frequencies, args.freq_masks, args.freq_mask_bins, args.random_eq)
    except ValueError as error:
        parser.error(f"augmentation (--warp-frequencies, --freq-masks, --freq-mask-bins, --random-eq): {error}")
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
    return encoder.float()  # weights stored in float16 (the shipped world's) train in float32; --mixed-precision autocasts


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


def make_accelerator(args, output_dir: Path) -> Accelerator:
    """The device, processes and precision (bf16 on a CPU only where it has bf16 hardware); the run's folder, args.json."""
    on_gpu = torch.cuda.is_available() and not args.cpu
    precision = args.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no" and not on_gpu and not (precision == "bf16" and cpu_has_bf16()):
        why = ("this CPU has no bf16 hardware (Intel AMX or AVX512-BF16), where bf16 runs 100-300x slower" if precision == "bf16"
               else "on CPU only bf16 autocast is used")
        logger.warning("--mixed-precision %s ignored: %s; training in fp32", precision, why)
        precision = "no"
    args.mixed_precision = precision  # args.json and the model card record the precision that ran
    accelerator = Accelerator(mixed_precision=precision, cpu=args.cpu, gradient_accumulation_steps=args.gradient_accumulation_steps,
                              log_with=None if args.report_to == "none" else args.report_to, project_dir=str(output_dir))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(args.seed, device_specific=True)  # each process its own negatives and dropout; data order is seeded separately
    if accelerator.is_main_process:
        (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (output_dir / "args.json").write_text(json.dumps(vars(args), indent=1))
        for stale in (output_dir / "checkpoints").glob("*.tmp"):  # a save the last run was killed in the middle of
            shutil.rmtree(stale)
        if args.report_to != "none":
            accelerator.init_trackers("align", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})
    return accelerator


def total(accelerator: Accelerator, count: int) -> int:
    """A count summed over the processes."""
    return int(accelerator.reduce(torch.tensor(count, device=accelerator.device), "sum").item())


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    return flag if accelerator.num_processes == 1 else total(accelerator, int(flag)) > 0


def alignment_losses(model, batch: dict, targets, criterion: AlignmentLoss, accelerator: Accelerator, args, step: int) -> dict:
    """The loss terms of one micro-batch: the encoder's states against its captions' targets, every other caption of
    every process's batch (and --extra-negatives cached ones) a negative."""
    audio = model(input_features=batch["input_features"], attention_mask=batch["attention_mask"]).last_hidden_state
    # a window shorter than 77 positions is trained on the targets' first positions: under CLIP's causal attention they
    # are exactly the encoding of a caption cut to that length
    positions = audio.shape[1]
    wanted = targets.get(batch["captions"], batch["caption_ids"].tolist())[:, :positions].to(audio.device)
    in_batch = accelerator.gather(batch["caption_ids"]).cpu().tolist()  # never a negative for any process's clip
    # A batch left with one caption (unreadable clips dropped, the rest refilled by repeats) has no negatives: contrast
    # it with cached captions instead, so the step still teaches something.
    fill = args.train_batch_size if len(set(in_batch)) < 2 < len(targets) else 0
    if fill and not args.extra_negatives:
        logger.warning("step %d: the batch holds one caption only (unreadable clips dropped), so %d cached captions stand in "
                       "as its negatives", step, fill)
    count = max(args.extra_negatives, fill)
    negatives = targets.sample(count, in_batch)[:, :positions].to(audio.device) if count else None
    return criterion(audio, wanted, batch["caption_ids"], negatives)


class TrainingLog:
    """The training figures since the last line, written to log.jsonl as means over micro-batches and processes."""

    def __init__(self, accelerator: Accelerator, path: Path):
        self.accelerator, self.path = accelerator, path
        self.restart()

    def restart(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.micro_batches, self.samples, self.clock = 0, 0, time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor], samples: int) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
        self.micro_batches, self.samples = self.micro_batches + 1, self.samples + samples

    def write(self, step: int, epoch: int, batch: int, lr: float, grad_norm: float, skipped_items: int) -> dict:
        accelerator = self.accelerator
        record = {"step": step, "epoch": epoch, "batch": batch}
        for name, value in self.sums.items():
            record[name] = accelerator.reduce(value, "mean").item() / self.micro_batches
        record.update(lr=lr, grad_norm=float(grad_norm), samples_per_second=self.samples * accelerator.num_processes / (time.perf_counter() - self.clock),
                      skipped_items=total(accelerator, skipped_items))
        if accelerator.is_main_process:
            with self.path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            tqdm.write(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        self.restart()
        return record


class HeldOut:
    """Held-out metrics on the main process (the others wait), kept in metrics.json: at step 0, every --eval-steps, at the end."""

    def __init__(self, accelerator: Accelerator, data: TrainingData, cache: TargetCache, path: Path, history: list[dict]):
        self.accelerator, self.data, self.cache, self.path, self.history = accelerator, data, cache, path, history

    def __call__(self, model, step: int) -> dict | None:
        result = None
        if self.accelerator.is_main_process and len(self.data.eval_set):
            result = {"step": step, **evaluate(self.accelerator.unwrap_model(model), self.data.eval_loader, self.cache)}
            self.history.append(result)
            self.path.write_text(json.dumps({"history": self.history, "latest": result}, indent=1))
            tqdm.write("eval step {step}: cosine {cosine:.4f}  mse {mse:.4f}  R@1 {R@1:.3f}  R@5 {R@5:.3f}  R@10 {R@10:.3f}  "
                       "(chance R@1 {chance_R@1:.3f}, {num_items} clips, {num_captions} captions)".format(**result))
            self.accelerator.log({f"eval/{k}": v for k, v in result.items() if k != "step"}, step=step)
        self.accelerator.wait_for_everyone()
        return result


def save_final(accelerator: Accelerator, model, feature_extractor, args, last_eval: dict | None, global_step: int) -> Path:
    """final/: a plain AudioPromptEncoder (LoRA merged) that hearing.encoder.load_audio_encoder loads, its feature extractor
    and model card; uploaded with --push-to-hub."""
    final_dir = Path(args.output_dir) / "final"
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if args.train_mode == "lora":
            trained = trained.merge_and_unload()
        if args.gradient_checkpointing:
            trained.gradient_checkpointing_disable()
        trained.save_pretrained(final_dir)
        feature_extractor.save_pretrained(final_dir)
        write_model_card(final_dir, args, last_eval, args.card_license)
        logger.info("saved the trained encoder and its model card to %s (load it with hearing.encoder.load_audio_encoder)", final_dir)
        if args.push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(args.hub_model_id, exist_ok=True)
            api.upload_folder(repo_id=args.hub_model_id, folder_path=str(final_dir), commit_message=f"align.train: step {global_step}")
            logger.info("uploaded %s to the Hub as %s", final_dir, args.hub_model_id)
    accelerator.wait_for_everyone()
    return final_dir


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    checkpoint_root = output_dir / "checkpoints"

    # 1. accelerator: device, processes, precision; the run's folder ------------------------------------------------
    accelerator = make_accelerator(args, output_dir)
    device = accelerator.device

    # 2. data: audio-caption pairs (files, a Hub dataset) or a stream; held-out pairs; the captions (align.training_data)
    data = TrainingData.open(args, accelerator)

    # 3. targets: every known caption through the text encoder once, cached on disk; then the text encoder is freed ----
    text_encoder, tokenizer = load_text_encoder(args, device)
    text_hidden_size = text_encoder.config.hidden_size
    with accelerator.main_process_first():  # the main process computes and writes; the others then only read
        cache = TargetCache(args.target_cache_dir, text_encoder, tokenizer)
        targets = data.targets(cache, text_encoder, tokenizer, progress=accelerator.is_main_process)
    cache.text_encoder = None  # from here on a missing target is an error, never a silent per-step encoder call
    del text_encoder
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 4. the encoder, what of it trains, and where its features are computed ------------------------------------------
    encoder = load_encoder_to_train(args.audio_model, text_hidden_size, args.num_audio_tokens)
    encoder.set_empty_embedding(cache.empty_embedding)  # the saved encoder carries its CFG input and BOS
    feature_extractor = load_feature_extractor(args.audio_model)
    # the same features, a whole batch in torch (~5x faster), normalised as the encoder's config says (hearing.encoder)
    statistics = mel_statistics(encoder.config.audio_config)
    batched_features = BatchedFeatureExtractor(feature_extractor, mel_statistics=statistics)
    if args.gradient_checkpointing:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder.train()
    model = apply_train_mode(encoder, args.train_mode, args.lora_rank, args.lora_alpha, args.lora_dropout)
    trainable = [p for p in model.parameters() if p.requires_grad]
    logger.info("training %s: %.2fM of %.2fM parameters", args.train_mode, sum(p.numel() for p in trainable) / 1e6, sum(p.numel() for p in model.parameters()) / 1e6)
    augment = FeatureAugment(args.warp_frequencies, args.freq_masks, args.freq_mask_bins, args.random_eq)
    # Training features: in the DataLoader's workers (CPU), or batched on the training device after the batch arrives
    # (a GPU computes a batch's filterbank in milliseconds, where workers would bottleneck it)
    features_on = args.features_on if args.features_on != "auto" else ("device" if device.type == "cuda" else "loader")
    device_features = BatchedFeatureExtractor(feature_extractor, device=device, mel_statistics=statistics) if features_on == "device" else None
    collator = AudioCaptionCollator(None if device_features is not None else batched_features, fill_to=args.train_batch_size, augment=augment)
    logger.info("training features computed %s", f"on {device}, batched" if device_features is not None else "in the data loader")
    data.make_loaders(encoder.window_samples, collator, AudioCaptionCollator(batched_features))

    # 5. optimizer, schedule, loss -----------------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, max_steps = data.prepare(model, optimizer)
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps, num_training_steps=max_steps)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, so not wrapped by prepare
    criterion = AlignmentLoss(args.temperature, args.mse_weight, level=args.contrast_level)

    # 6. resume: weights, optimizer, scheduler, RNG from accelerate; step and data position from the checkpoint ---------
    global_step, epoch, batches_done, skipped_items = 0, 0, 0, 0
    checkpoint = checkpoint_to_resume(args.resume_from_checkpoint, checkpoint_root)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
        global_step, epoch, batches_done = state["global_step"], state["epoch"], state["batches_done"]
        skipped_items = state["skipped_items"] if accelerator.is_main_process else 0  # a total over processes; logging sums them again
        data.resume(checkpoint)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint.name, global_step, epoch, batches_done)
    metrics_path, log_path = output_dir / "metrics.json", output_dir / "log.jsonl"
    history = json.loads(metrics_path.read_text())["history"] if checkpoint is not None and metrics_path.exists() else []
    held_out = HeldOut(accelerator, data, cache, metrics_path, [h for h in history if h["step"] <= global_step])  # not what a killed run logged after its checkpoint
    if args.record_samples and args.streaming:
        data.samples_path = output_dir / f"samples-rank{accelerator.process_index}.jsonl"
    for path in (log_path if accelerator.is_main_process else None, data.samples_path):  # what the killed run did after its checkpoint is done again
        keep_lines_until(path, global_step if checkpoint is not None else None)
    log = TrainingLog(accelerator, log_path)

    # 7. the loop ------------------------------------------------------------------------------------------------
    last_eval = held_out(model, 0) if global_step == 0 else (held_out.history[-1] if held_out.history else None)
    progress = tqdm(total=max_steps, initial=global_step, desc="train", unit="step", disable=not accelerator.is_main_process)
    resumed_epoch = checkpoint is not None  # an epoch resumed from a checkpoint at its very end has nothing left to give
    while global_step < max_steps:
        used_this_epoch = 0
        for batch in data.batches(epoch, batches_done):
            batches_done += 1
            skipped_items += batch["skipped"]
            data.remember(batch, global_step + 1, epoch)
            if any_process(accelerator, empty_batch(batch)):  # every clip of a batch unreadable: all processes skip it together
                continue
            batch = data.on_device(batch, device)
            if device_features is not None:  # --features-on device: the batch brought sound; the filterbank runs here
                batch.update(features_on_device(batch, device_features, augment))
            used_this_epoch += 1
            with accelerator.accumulate(model):  # gradients all-reduced, and the optimizer stepped, on the last micro-batch only
                losses = alignment_losses(model, batch, targets, criterion, accelerator, args, global_step + 1)
                # scaled by 1 / gradient_accumulation_steps inside accumulate(); the contrastive term by the number of
                # processes, so that DDP's average gives the gradient of one process on the concatenated batch
                accelerator.backward(loss_for_backward(losses, args.mse_weight, accelerator.num_processes))
            log.add(losses, len(batch["captions"]))
            if not accelerator.sync_gradients:
                continue

            grad_norm = accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            progress.update(1)

            if global_step % args.logging_steps == 0 or global_step == max_steps:
                record = log.write(global_step, epoch, batches_done, scheduler.get_last_lr()[0], grad_norm, skipped_items)
                progress.set_postfix(loss=f"{record['loss']:.4f}")
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                state = {"global_step": global_step, "epoch": epoch, "batches_done": batches_done,
                         "skipped_items": total(accelerator, skipped_items), "num_processes": accelerator.num_processes}
                logger.info("saved %s", save_checkpoint(accelerator, checkpoint_root, state, args.checkpoints_total_limit, data.checkpoint_state()))
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_steps:
                last_eval = held_out(model, global_step)
            if global_step >= max_steps:
                break
        else:  # the epoch ran out
            if used_this_epoch == 0 and not resumed_epoch and (batches_done > 0 or args.streaming):
                raise RuntimeError(f"epoch {epoch}: no readable training batch ({skipped_items} items skipped). Check the audio files and shards.")
            epoch, batches_done, resumed_epoch = epoch + 1, 0, False
            data.end_epoch()
    progress.close()

    # 8. final evaluation and save ------------------------------------------------------------------------------------
    if not held_out.history or held_out.history[-1]["step"] != global_step:
        last_eval = held_out(model, global_step)
    final_dir = save_final(accelerator, model, feature_extractor, args, last_eval, global_step)
    skipped_items = total(accelerator, skipped_items)
    accelerator.end_training()
    if accelerator.num_processes > 1:
        KEPT_UNTIL_EXIT.extend([accelerator, model])  # never freed: see end_process
    return {"final_dir": str(final_dir), "global_step": global_step, "metrics": last_eval, "skipped_items": skipped_items, "target_cache": str(cache.dir)}


KEPT_UNTIL_EXIT: list = []  # a multi-process run's DDP model and accelerator, which only end_process may end


def end_process() -> None:
    """End a process of a multi-process run here, without Python's teardown.

    Freeing the DDP model frees its reducer and, with the last reference, Gloo's process group, whose destructor holds
    the GIL while it waits for its worker thread; a worker still freeing a finished all-reduce needs the GIL to drop
    that reduce's tensors, so the rank hangs for ever after its work is done (seen in this project's multi-process tests,
    both when `main` returned and at interpreter exit: `~Reducer → ~ProcessGroupGloo` in the main thread,
    `~AsyncAllreduceWork` waiting for the GIL in the worker; pytorch/pytorch#75097). So `main` keeps that model alive
    (KEPT_UNTIL_EXIT) and the entry points end the process here: by then the run has written and closed everything. A
    single process returns as usual."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except DataError as error:  # data that cannot be used as given: one line that names it, not a traceback
        sys.exit(f"error: {error}")
    end_process()
