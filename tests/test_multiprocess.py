"""Several processes, proven on 2 CPU processes (gloo): the loss and the gradients equal one process on the
concatenated batch (negatives gathered with gradients, a caption shared across processes masked), and
checkpoints written by 2 processes resume.

This file is also the script the gradient test launches: `python -m torch.distributed.run --nproc_per_node 2
tests/test_multiprocess.py <out-dir>` computes, on each process, the loss on its half of a fixed batch through
DistributedDataParallel (what accelerate wraps the model in) and writes the loss and the averaged gradients.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script by torch.distributed.run
    sys.path.insert(0, str(REPO))

from align import train
from align.loss import AlignmentLoss, loss_for_backward
from architectures import tiny_models
from tests.conftest import pack, run_processes, subprocess_env

TOKENS = 12
CAPTION_IDS = [0, 1, 1, 2]  # process 0 gets [0, 1], process 1 gets [1, 2]: caption 1 is shared across the processes
MSE_WEIGHT = 0.5


def deterministic_encoder():
    """tiny_models' encoder with dropout and SpecAugment off, so that 1 and 2 processes compute the same function
    (built so from its config: no parameter, such as SpecAugment's mask embedding, goes unused under DDP)."""
    from transformers import Wav2Vec2BertConfig

    from hearing.encoder import (
        AudioPromptEncoder,
        AudioPromptEncoderConfig,
        adapter_settings,
    )

    torch.manual_seed(0)
    no_dropout = {name: 0.0 for name in ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "conformer_conv_dropout", "mask_time_prob")}
    audio_config = adapter_settings(
        Wav2Vec2BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_depthwise_kernel_size=3,
                           apply_spec_augment=False, **no_dropout),
        output_hidden_size=tiny_models.TEXT_HIDDEN,
    )
    return AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=audio_config, num_audio_tokens=TOKENS))


def fixed_batch():
    generator = torch.Generator().manual_seed(1)
    waves = [0.1 * torch.randn(16_000, generator=generator).numpy() for _ in CAPTION_IDS]
    encoder = deterministic_encoder()
    features = encoder.features(waves, tiny_models.feature_extractor())
    targets = torch.randn(len(CAPTION_IDS), TOKENS + 1, tiny_models.TEXT_HIDDEN, generator=generator)
    targets[CAPTION_IDS.index(1) + 1] = targets[CAPTION_IDS.index(1)]  # the same caption, the same target
    return features, targets, torch.tensor(CAPTION_IDS)


def loss_and_gradients(model, features, targets, ids, num_processes):
    model.train()
    audio = model(**features).last_hidden_state
    losses = AlignmentLoss(temperature=0.15, mse_weight=MSE_WEIGHT)(audio, targets, ids)
    loss_for_backward(losses, MSE_WEIGHT, num_processes).backward()
    module = model.module if hasattr(model, "module") else model
    return losses, {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}


def distributed_main(out: Path):
    """One of 2 processes: its half of the fixed batch, through DDP; writes its loss and the averaged gradients."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    features, targets, ids = fixed_batch()
    half = slice(rank * len(ids) // world, (rank + 1) * len(ids) // world)
    model = torch.nn.parallel.DistributedDataParallel(deterministic_encoder())
    losses, grads = loss_and_gradients(model, {k: v[half] for k, v in features.items()}, targets[half], ids[half], world)
    # what the loop did before: the plain loss, DDP's average; kept to show the factor it was off by
    plain = torch.nn.parallel.DistributedDataParallel(deterministic_encoder())
    audio = plain(**{k: v[half] for k, v in features.items()}).last_hidden_state
    AlignmentLoss(temperature=0.15, mse_weight=MSE_WEIGHT)(audio, targets[half], ids[half])["loss"].backward()
    unscaled = {name: p.grad.detach().clone() for name, p in plain.module.named_parameters() if p.grad is not None}
    torch.save({"losses": {k: v.item() for k, v in losses.items()}, "grads": grads, "unscaled": unscaled}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_two_processes_give_the_loss_and_gradients_of_one_process_on_the_whole_batch(tmp_path):
    run = run_processes([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
                         __file__, str(tmp_path)])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    features, targets, ids = fixed_batch()
    reference_losses, reference = loss_and_gradients(deterministic_encoder(), features, targets, ids, 1)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    for result in ranks:  # every process computes the contrastive loss over all 4 clips, its MSE over its own 2
        assert result["losses"]["contrastive"] == pytest.approx(reference_losses["contrastive"].item(), rel=1e-5)
    mean_loss = sum(r["losses"]["loss"] for r in ranks) / 2  # what the training log reports (mean over processes)
    assert mean_loss == pytest.approx(reference_losses["loss"].item(), rel=1e-5)

    assert set(ranks[0]["grads"]) == set(reference) and len(reference) > 10
    for name, expected in reference.items():
        for result in ranks:  # after DDP's all-reduce both processes hold the same gradient: one process's, whole batch
            torch.testing.assert_close(result["grads"][name], expected, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    # without the scaling in align.loss.loss_for_backward, DDP's average would leave half the contrastive gradient
    deviation = max((ranks[0]["unscaled"][n] - g).abs().max().item() / (g.abs().max().item() + 1e-12) for n, g in reference.items())
    assert deviation > 1e-2


def launch_train(args, processes):
    """`align.train` on `processes` CPU processes over gloo. torchrun directly (what `accelerate launch --multi_gpu` runs, less
    one interpreter start); note that `accelerate launch --cpu --num_processes 2` would start only ONE process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", free_port(),
               "-m", "align.train", *args]
    return run_processes(command)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_two_training_processes_match_one_process_step_by_step(tmp_path, synthetic_data):
    models = tmp_path / "models"
    deterministic_encoder().save_pretrained(models / "audio")
    tiny_models.tiny_text_encoder().save_pretrained(models / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(models / "tokenizer")

    def args(out, batch):
        return ["--data-dir", str(synthetic_data), "--audio-model", str(models / "audio"), "--text-encoder", str(models / "text_encoder"),
                "--tokenizer", str(models / "tokenizer"), "--output-dir", str(out), "--target-cache-dir", str(tmp_path / "targets"),
                "--train-batch-size", str(batch), "--num-workers", "0", "--lr-warmup-steps", "1", "--learning-rate", "1e-3",
                "--max-train-steps", "3", "--checkpointing-steps", "2", "--logging-steps", "1", "--eval-steps", "0", "--cpu",
                "--mse-weight", str(MSE_WEIGHT), "--seed", "0"]

    single = tmp_path / "single"
    train.main(args(single, 4))  # one process, 4 clips a step
    double = tmp_path / "double"
    run = launch_train(args(double, 2), 2)  # two processes, 2 clips each: the same 4 clips a step
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    one, two = read_log(single), read_log(double)
    assert [r["step"] for r in two] == [1, 2, 3]
    assert (double / "checkpoints" / "checkpoint-2" / "random_states_1.pkl").exists()  # really 2 processes
    for a, b in zip(one, two):  # the same loss and gradient norm (before clipping), so the same updates, step after step
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


def test_a_streaming_run_on_two_processes_sees_every_good_sample_once_and_resumes(tmp_path, synthetic_data):
    """Tar shards with a bad member, streamed by 2 processes: epoch 0 uses every good sample exactly once over both,
    and a run resumed from the 2 processes' checkpoint repeats the same losses and the same samples."""
    from collections import Counter

    models = tmp_path / "models"
    deterministic_encoder().save_pretrained(models / "audio")
    tiny_models.tiny_text_encoder().save_pretrained(models / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(models / "tokenizer")
    paths, good = pack(synthetic_data, tmp_path / "shards")  # 7 shards: 24 good clips and one undecodable
    out = tmp_path / "run"
    args = ["--shards", str(tmp_path / "shards" / f"shard-{{000000..{len(paths) - 1:06d}}}.tar"), "--audio-model", str(models / "audio"),
            "--text-encoder", str(models / "text_encoder"), "--tokenizer", str(models / "tokenizer"), "--output-dir", str(out),
            "--target-cache-dir", str(tmp_path / "targets"), "--train-batch-size", "2", "--num-workers", "0", "--lr-warmup-steps", "1",
            "--shuffle-buffer", "4", "--record-samples", "--max-train-steps", "8", "--checkpointing-steps", "3", "--logging-steps", "1",
            "--eval-steps", "0", "--cpu"]
    run = launch_train(args, 2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first_log = read_log(out)
    first_samples = [(out / f"samples-rank{r}.jsonl").read_text() for r in (0, 1)]

    def epoch_keys(epoch):
        keys = []
        for rank in (0, 1):
            for line in (out / f"samples-rank{rank}.jsonl").read_text().splitlines():
                record = json.loads(line)
                keys += record["keys"] if record["epoch"] == epoch else []
        return keys

    assert Counter(epoch_keys(0)) == Counter(good)  # 2 processes, each its own shards: all good clips once, none twice
    assert first_log[-1]["epoch"] == 1 and first_log[-1]["skipped_items"] >= 1  # the bad member, counted (once an epoch)

    checkpoint = out / "checkpoints" / "checkpoint-3"
    assert {p.name for p in checkpoint.glob("stream_state-*.json")} == {"stream_state-0.json", "stream_state-1.json"}
    resumed = launch_train(args + ["--resume-from-checkpoint", str(checkpoint)], 2)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    again = read_log(out)
    assert [r["step"] for r in again] == list(range(1, 9))
    for before, after in zip(first_log, again):
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-4)
    assert [(out / f"samples-rank{r}.jsonl").read_text() for r in (0, 1)] == first_samples  # the same samples after the checkpoint


def test_a_launch_that_never_ends_fails_with_the_stack_of_each_of_its_processes():
    # the launched process starts one that sleeps: that one is stopped with SIGABRT and its stack comes back
    command = [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(120)'])"]
    with pytest.raises(pytest.fail.Exception) as failed:
        run_processes(command, timeout=3)
    assert "still running after 3 s" in str(failed.value)
    assert "Fatal Python error: Aborted" in str(failed.value) and 'File "<string>", line 1 in <module>' in str(failed.value)


@pytest.mark.parametrize("world_size", ["2", "1"])
def test_a_process_of_a_multi_process_run_ends_without_the_teardown_that_can_hang_it(world_size):
    # Gloo's process group can deadlock in its destructor at interpreter exit (align.train.end_process): a rank of a
    # multi-process run must end right there, its output flushed and exit code 0; a lone process goes on as usual
    script = ("import atexit, logging; from align.train import end_process; atexit.register(print, 'teardown ran'); "
              "logging.basicConfig(); logging.getLogger('run').warning('logged'); print('written', end=''); end_process(); print(' and on')")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**subprocess_env(), "PYTHONFAULTHANDLER": "1", "WORLD_SIZE": world_size})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "WARNING:run:logged" in run.stderr
    if world_size == "2":
        assert run.stdout == "written"
    else:
        assert run.stdout == "written and on\nteardown ran\n"


if __name__ == "__main__":
    distributed_main(Path(sys.argv[1]))
