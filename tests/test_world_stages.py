"""The training stages one by one: the step and time budget with its learning rate (world.stage), train_audio's --init,
--speech-repeat and bf16 choice, a stalled CLAP run restarting with the next seed (world.train_clap), train_unet's
--init, and what world.assemble ships."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from world.scenes import SOUND_CLASSES, world_scenes
from world.stage import Budget


def test_budget_stops_on_steps_or_time_and_ends_at_a_low_learning_rate():
    budget = Budget(steps=10)
    factors = []
    while budget.next():
        factors.append(budget.lr_factor())
    assert budget.step == 10 and factors[-1] < 0.05 and max(factors) > 0.9
    timed = Budget(steps=10**9, minutes=1e-9)
    assert not timed.next()


def test_train_audio_init_needs_a_finished_encoder_and_excludes_pretrained(tmp_path):
    from world import train_audio

    with pytest.raises(SystemExit, match="no model.safetensors there"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--init", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="not both"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--init", str(tmp_path), "--pretrained", str(tmp_path)])
    with pytest.raises(SystemExit, match="give --init too"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--fixed-mel-statistics"])


def test_speech_repeat_lists_each_spoken_row_that_many_times_and_each_sound_once(tmp_path):
    from world import train_audio

    audio = tmp_path / "audio"
    rows = {"train": [{"file_name": "a.wav", "caption": "a red circle on the left", "engine": "flite"},
                      {"file_name": "sound_dog_0.wav", "caption": "a dog barking", "sound": "dog"}],
            "test": [{"file_name": "b.wav", "caption": "a blue square in the middle", "engine": "pico"}]}
    for part, part_rows in rows.items():
        (audio / part).mkdir(parents=True)
        for row in part_rows:
            (audio / part / row["file_name"]).write_bytes(row["file_name"].encode())
        (audio / part / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part_rows))
    assert train_audio.training_folder(audio, tmp_path / "out", 1) == audio  # once each: the world's own folder
    mix = train_audio.training_folder(audio, tmp_path / "out", 3)
    listed = [json.loads(line)["file_name"] for line in (mix / "train" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(listed) == ["a.wav"] * 3 + ["sound_dog_0.wav"]
    assert (mix / "train" / "a.wav").read_bytes() == b"a.wav" and (mix / "train" / "a.wav").stat().st_ino == (audio / "train" / "a.wav").stat().st_ino
    assert (mix / "test" / "metadata.jsonl").read_text() == (audio / "test" / "metadata.jsonl").read_text()
    assert train_audio.training_folder(audio, tmp_path / "out", 2) == mix  # a different repeat rewrites the rows
    assert len((mix / "train" / "metadata.jsonl").read_text().splitlines()) == 3
    for only, kept in (("sounds", ["sound_dog_0.wav"]), ("speech", ["a.wav", "a.wav"])):  # one kind alone: an expert's rows
        assert train_audio.training_folder(audio, tmp_path / "out", 2, only) == mix
        assert [json.loads(line)["file_name"] for line in (mix / "train" / "metadata.jsonl").read_text().splitlines()] == kept
    with pytest.raises(SystemExit, match="--speech-repeat 0"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--speech-repeat", "0"])


@pytest.mark.parametrize("hardware", [True, False])
def test_train_audio_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, hardware):
    from world import train_audio

    monkeypatch.setattr(train_audio, "cpu_has_bf16", lambda: hardware)
    precision = {choice: train_audio.training_precision(choice) for choice in ("auto", "bf16", "fp32")}
    assert precision == {"auto": "bf16" if hardware else "no", "bf16": "bf16", "fp32": "no"}
    args = argparse.Namespace(world="w", steps=4, lr=1e-3, seed=0, num_workers=0, warp_frequencies=0.0, freq_masks=0, random_eq=6.0, extra_negatives=72, precision="auto",
                              speech_repeat=1, contrast_level="token", mse_weight=1.0, only=None)
    line = train_audio.align_arguments(args, Path("init"), Path("out"), Path("clip"), batch_size=8)
    assert line[line.index("--mixed-precision") + 1] == precision["auto"]
    assert line[line.index("--extra-negatives") + 1] == "72"
    assert line[line.index("--random-eq") + 1] == "6.0"  # align.train's equalisation, passed on
    assert line[line.index("--contrast-level") + 1] == "token"  # the shipped stages' recipe, whatever align.train's default
    assert line[line.index("--mse-weight") + 1] == "1.0"
    assert line[line.index("--data-dir") + 1] == str(Path("w") / "audio")
    args.speech_repeat = 2  # the spoken rows repeated: align.train reads the stage's own mixed folder
    line = train_audio.align_arguments(args, Path("init"), Path("out"), Path("clip"), batch_size=8)
    assert line[line.index("--data-dir") + 1] == str(Path("out") / "mix")
    args.speech_repeat, args.only = 1, "sounds"  # one kind alone: the mixed folder as well
    line = train_audio.align_arguments(args, Path("init"), Path("out"), Path("clip"), batch_size=8)
    assert line[line.index("--data-dir") + 1] == str(Path("out") / "mix")


@pytest.mark.parametrize("stall_loss, seeds", [(float("inf"), [0]), (-1.0, [0, 1, 2])])
def test_a_stalled_clap_run_starts_again_with_the_next_seed(small_world, tmp_path, monkeypatch, stall_loss, seeds):
    import world.train_clap as train_clap

    monkeypatch.setattr(train_clap, "STALL_LOSS", stall_loss)  # inf: never stalled; -1: always stalled
    metrics = train_clap.main(["--world", str(small_world), "--out", str(tmp_path / "clap"), "--steps", "4", "--restarts", "2"])
    assert metrics["seeds"] == seeds and metrics["steps"] == 4  # the last try always runs its whole budget
    assert (tmp_path / "clap" / "clap" / "model.safetensors").exists()


def test_clap_learns_the_speech_alone_then_goes_on_from_it_with_init(small_world, tmp_path):
    import json
    import shutil

    import world.train_clap as train_clap
    from safetensors.torch import load_file

    world = tmp_path / "world"  # the small world with one recorded sound among its training clips
    shutil.copytree(small_world, world)
    train = world / "audio" / "train"
    rows = [json.loads(line) for line in (train / "metadata.jsonl").read_text().splitlines() if line.strip()]
    shutil.copyfile(train / rows[0]["file_name"], train / "sound_dog_0.wav")
    (train / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + [{"file_name": "sound_dog_0.wav", "caption": "a dog barking", "sound": "dog"}]))
    processor = train_clap.world_clap_processor(["a"])
    spoken = train_clap.clip_features(train, processor, speech_only=True)[1]
    assert len(spoken) == len(rows) and not any("sound" in r for r in spoken)
    assert len(train_clap.clip_features(train, processor)[1]) == len(rows) + 1

    train_clap.main(["--world", str(world), "--out", str(tmp_path / "speech"), "--steps", "2", "--speech-only"])
    first = tmp_path / "speech" / "clap"
    metrics = train_clap.main(["--world", str(world), "--out", str(tmp_path / "both"), "--steps", "2", "--lr", "0", "--seed", "5", "--init", str(first)])
    given, saved = load_file(first / "model.safetensors"), load_file(tmp_path / "both" / "clap" / "model.safetensors")
    learned = [name for name, _ in train_clap.ClapModel.from_pretrained(first).named_parameters()]  # not BatchNorm's running statistics
    assert learned and all(torch.equal(given[k], saved[k]) for k in learned)  # at learning rate 0 it saves the CLAP it started from
    assert metrics["steps"] == 2
    with pytest.raises(SystemExit):  # a folder without weights: one line, before anything loads
        train_clap.main(["--world", str(world), "--out", str(tmp_path / "none"), "--init", str(tmp_path / "missing")])


def test_train_unet_init_continues_from_the_given_unet(tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from architectures import tiny_models
    from world import train_unet
    from world.settings import TEXT_HIDDEN, world_tokenizer

    clip, vae = tmp_path / "clip", tmp_path / "vae"
    world_tokenizer().save_pretrained(clip / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=39, bos_token_id=49406, eos_token_id=49407)).save_pretrained(clip / "text_encoder")
    tiny_models.tiny_vae().save_pretrained(vae / "vae")  # the stage reads only its scaling factor
    save_file({"mean": torch.randn(4, 4, 8, 8), "std": torch.full((4, 4, 8, 8), 0.1), "caption_ids": torch.arange(4)}, vae / "latents.safetensors")
    start = train_unet.make_unet(seed=5)
    start.save_pretrained(tmp_path / "start")
    common = ["--clip", str(clip), "--vae", str(vae), "--steps", "1", "--batch-size", "2", "--lr", "0"]
    train_unet.main([*common, "--out", str(tmp_path / "continued"), "--init", str(tmp_path / "start")])
    train_unet.main([*common, "--out", str(tmp_path / "fresh")])

    def weights(folder):
        return UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True).state_dict()

    # at learning rate 0 a run saves the weights it started from: the given UNet with --init, a fresh one without
    continued, fresh, given = weights(tmp_path / "continued"), weights(tmp_path / "fresh"), start.state_dict()
    assert all(torch.equal(continued[k], given[k]) for k in given)
    assert not all(torch.equal(fresh[k], given[k]) for k in given)


def test_assemble_ships_the_sound_stages_parts_and_the_ears_it_is_given(tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from hearing.encoder import load_audio_encoder
    from architectures import tiny_models
    from world import assemble

    runs = tmp_path / "runs"
    tiny_models.tiny_vae().save_pretrained(runs / "sound_vae" / "vae")
    tiny_models.tiny_unet().save_pretrained(runs / "sound_unet" / "unet")
    DPMSolverMultistepScheduler().save_pretrained(runs / "sound_unet" / "scheduler")
    tiny_models.tiny_text_encoder().save_pretrained(runs / "words" / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(runs / "words" / "tokenizer")
    for stage, name, (model, processor) in (("words", "clip", tiny_models.tiny_clip()), ("clap", "clap", tiny_models.tiny_clap())):
        model.save_pretrained(runs / stage / name)
        processor.save_pretrained(runs / stage / name)
    for shift, folder in ((0.0, runs / "route" / "final"), (0.25, tmp_path / "trial" / "final")):
        encoder = tiny_models.tiny_audio_encoder()  # built the same each time: the trial's weights are moved
        with torch.no_grad():
            for weight in encoder.parameters():
                weight.add_(shift)
        encoder.save_pretrained(folder)
        tiny_models.feature_extractor().save_pretrained(folder)

    def shipped_ears_match(out, source):
        shipped, given = load_audio_encoder(out / "pipeline" / "audio_encoder").state_dict(), load_audio_encoder(source).state_dict()
        return all(torch.equal(shipped[k], given[k].half().float()) for k in given)

    assemble.main(["--runs", str(runs), "--out", str(tmp_path / "default")])
    assert f"{len(SOUND_CLASSES)} everyday sounds" in (tmp_path / "default" / "README.md").read_text()
    assemble.main(["--runs", str(runs), "--out", str(tmp_path / "tried"), "--audio-encoder", str(tmp_path / "trial" / "final")])
    assert shipped_ears_match(tmp_path / "default", runs / "route" / "final")
    assert shipped_ears_match(tmp_path / "tried", tmp_path / "trial" / "final")
    assert not shipped_ears_match(tmp_path / "tried", runs / "route" / "final")
    assert (tmp_path / "tried" / "scorer" / "vocabulary.txt").read_text().count("\n") == 1 + len(world_scenes())
    with pytest.raises(SystemExit):
        assemble.main(["--runs", str(runs), "--out", str(tmp_path / "none"), "--audio-encoder", str(tmp_path / "missing")])


def tiny_speech_and_sound_ears(tmp_path, sound_change) -> tuple[dict, Path]:
    """Tiny speech ears and sound ears (the same weights, the sound ears' moved by `sound_change(weight)`) in final/
    folders as align.train leaves them, and a tiny text tower as the words stage leaves it."""
    from architectures import tiny_models

    folders = {}
    for name in ("speech", "sounds"):
        encoder = tiny_models.tiny_audio_encoder()  # built the same each time
        if name == "sounds":
            with torch.no_grad():
                for weight in encoder.parameters():
                    weight.add_(sound_change(weight))
        folders[name] = tmp_path / name / "final"
        encoder.save_pretrained(folders[name])
        tiny_models.feature_extractor().save_pretrained(folders[name])
    clip = tmp_path / "words"
    tiny_models.tiny_text_encoder().save_pretrained(clip / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(clip / "tokenizer")
    return folders, clip


def test_blend_ears_averages_the_speech_and_sound_ears_weights_and_ships_a_loadable_encoder(tmp_path):
    from hearing.encoder import load_audio_encoder
    from world import blend_ears

    folders, clip = tiny_speech_and_sound_ears(tmp_path, lambda weight: torch.ones_like(weight))  # the sound ears' weights moved by 1

    out = tmp_path / "blend"
    metrics = blend_ears.main(["--speech", str(folders["speech"]), "--sounds", str(folders["sounds"]), "--sounds-weight", "0.75",
                               "--world", str(tmp_path / "world"), "--clip", str(clip), "--out", str(out), "--threads", "1"])
    speech, sounds = (load_audio_encoder(folders[n]).state_dict() for n in ("speech", "sounds"))
    blended = load_audio_encoder(out / "final").state_dict()
    for key, value in blended.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.25 * speech[key] + 0.75 * sounds[key], atol=1e-6), key
    assert (out / "final" / "preprocessor_config.json").exists() and json.loads((out / "metrics.json").read_text())["sounds_weight"] == 0.75
    assert metrics["sounds_weight"] == 0.75 and (out / "held_out.json").exists()

    from transformers import Wav2Vec2BertConfig
    from hearing.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings
    from world.settings import TEXT_HIDDEN
    wider = adapter_settings(Wav2Vec2BertConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                                conv_depthwise_kernel_size=3), output_hidden_size=TEXT_HIDDEN)
    with pytest.raises(ValueError, match="architecture"):  # ears not trained one from the other
        blend_ears.blend(load_audio_encoder(folders["speech"]), AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=wider)), 0.5)
    with pytest.raises(ValueError, match="weight from 0"):
        blend_ears.blend(load_audio_encoder(folders["speech"]), load_audio_encoder(folders["sounds"]), 1.5)
    with pytest.raises(SystemExit):  # a folder without weights: one line, before anything loads
        blend_ears.main(["--speech", str(tmp_path / "missing"), "--sounds", str(folders["sounds"]), "--out", str(tmp_path / "none")])


def test_widen_ears_doubles_the_backbone_and_hears_the_same(tmp_path):
    import numpy as np
    from transformers import Wav2Vec2BertConfig

    from architectures import tiny_models
    from hearing.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings, load_audio_encoder
    from world import widen_ears
    from world.settings import TEXT_HIDDEN

    def ears(hidden):
        torch.manual_seed(0)
        backbone = Wav2Vec2BertConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
                                      conv_depthwise_kernel_size=3)
        return AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=adapter_settings(backbone, output_hidden_size=TEXT_HIDDEN), num_audio_tokens=8))

    with pytest.raises(ValueError, match="as wide as the text tower"):  # no adapter projection to take the doubled width
        widen_ears.widen(ears(TEXT_HIDDEN))
    narrow = ears(TEXT_HIDDEN + 8)
    with torch.no_grad():  # every weight away from its initial value, layer-norm gains and biases included
        generator = torch.Generator().manual_seed(3)
        for weight in narrow.parameters():
            weight.add_(0.2 * torch.randn(weight.shape, generator=generator))
    features = narrow.features([np.random.default_rng(i).standard_normal(narrow.window_samples).astype(np.float32) for i in range(3)],
                               tiny_models.feature_extractor())
    wide = widen_ears.widen(narrow, seed=1)
    config, old = wide.config.audio_config, narrow.config.audio_config
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads) == (2 * old.hidden_size, 2 * old.intermediate_size, old.num_attention_heads)
    assert widen_ears.largest_difference(narrow, wide, features) < 1e-4  # float32 rounding: the same function
    off = widen_ears.widen(narrow, seed=1)
    with torch.no_grad():
        off.audio_model.encoder.layers[0].self_attn.linear_q.weight.mul_(0.5)  # were the query not rescaled, the scores would change
    assert widen_ears.largest_difference(narrow, off, features) > 1e-2
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())

    def copies_gradients(ears):  # the two copies of each residual unit, as the feature projection writes them (no dropout)
        ears.eval()
        ears.zero_grad()
        ears(**features).last_hidden_state.pow(2).mean().backward()
        grad = ears.audio_model.feature_projection.projection.weight.grad
        return grad[: old.hidden_size], grad[old.hidden_size:]

    first, second = copies_gradients(wide)
    assert not torch.allclose(first, second)  # uneven splits: the copies learn apart
    first, second = copies_gradients(widen_ears.widen(narrow, spread=0.0))
    assert torch.allclose(first, second)  # even splits keep them twins, which the default avoids

    folder = tmp_path / "narrow" / "final"
    narrow.save_pretrained(folder)
    tiny_models.feature_extractor().save_pretrained(folder)
    clip = tmp_path / "words"
    tiny_models.tiny_text_encoder().save_pretrained(clip / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(clip / "tokenizer")
    metrics = widen_ears.main(["--ears", str(folder), "--world", str(tmp_path / "world"), "--clip", str(clip), "--out", str(tmp_path / "wide"),
                               "--threads", "1"])
    assert metrics["largest_difference"] < 1e-4 and (tmp_path / "wide" / "metrics.json").exists()
    assert load_audio_encoder(tmp_path / "wide" / "final").config.audio_config.hidden_size == 2 * old.hidden_size
    with pytest.raises(SystemExit):  # a folder without weights: one line, before anything loads
        widen_ears.main(["--ears", str(tmp_path / "missing"), "--out", str(tmp_path / "none")])


def test_router_fit_weighs_both_kinds_the_same():
    """Nine spoken clips for every sound (the spoken ones heard twice, once made harder): the router's line still sits
    halfway between the kinds, not pushed towards the sounds by the count."""
    from architectures import tiny_models
    from hearing.encoder import AudioPromptEncoder
    from world.route_ears import fit_router

    ears = AudioPromptEncoder.from_experts([tiny_models.tiny_audio_encoder()], [tiny_models.tiny_audio_encoder()])
    width = ears.router.in_features
    generator = torch.Generator().manual_seed(0)
    spoken = torch.randn(900, width, generator=generator)
    sounds = torch.randn(100, width, generator=generator)
    spoken[:, 0] += 1.0  # the kinds differ along one direction only, and overlap
    sounds[:, 0] -= 1.0
    fit_router(ears, torch.cat([spoken, sounds]), torch.cat([torch.ones(900, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)]))
    with torch.no_grad():
        spoken_right = float((ears.first_expert_weight(torch.randn(2000, width, generator=generator) + torch.eye(width)[0]) > 0.5).float().mean())
        sounds_right = float((ears.first_expert_weight(torch.randn(2000, width, generator=generator) - torch.eye(width)[0]) < 0.5).float().mean())
    assert abs(spoken_right - sounds_right) < 0.08, (spoken_right, sounds_right)  # unweighted: 0.99 against 0.43


def test_route_ears_trains_the_router_to_tell_speech_from_sounds(tmp_path):
    import numpy as np
    import soundfile as sf
    from hearing.encoder import load_audio_encoder
    from architectures import tiny_models
    from world import route_ears

    folders, clip = tiny_speech_and_sound_ears(tmp_path, lambda weight: 0.05 * torch.randn_like(weight))
    rng = np.random.default_rng(0)
    world = tmp_path / "world"
    t = np.arange(12_000) / 16_000
    for part, count in (("train", 40), ("test", 4), ("test_sound_sources", 4)):  # "speech": syllable-like bursts; "sounds": steady noise
        folder = world / "audio" / part
        folder.mkdir(parents=True)
        rows = []
        for i in range(count):
            sound = part == "test_sound_sources" or (part == "train" and i % 2)
            wave = rng.normal(0, 0.3, 12_000) if sound else 0.3 * np.sin(t * rng.uniform(800, 2400)) * (np.sin(t * 2 * np.pi * rng.uniform(3, 5)) > 0)
            sf.write(folder / f"{i}.wav", wave.astype(np.float32), 16_000)
            rows.append({"file_name": f"{i}.wav", **({"sound": "dog", "caption": "a dog barking"} if sound else {"caption": "a red circle on the left", "colour": "red", "shape": "circle", "position": "left"})})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    out = tmp_path / "route"
    metrics = route_ears.main(["--speech", str(folders["speech"]), "--sounds", str(folders["sounds"]), "--world", str(world),
                               "--clip", str(clip), "--out", str(out), "--clips-per-kind", "10", "--threads", "1"])
    assert metrics["routed_right"] == {"train": 1.0, "test": 1.0, "test_sound_sources": 1.0}  # bursts and noise: told apart
    assert metrics["router_clips"] == {"spoken": 10, "made_harder": 10, "sounds": 20}  # each spoken clip again, made harder
    routed = load_audio_encoder(out / "final").eval()
    assert routed.sound_model is not None and (out / "held_out.json").exists() and json.loads((out / "metrics.json").read_text())["routed_right"]
    experts = {name: load_audio_encoder(folders[name]).eval() for name in folders}
    tone = (0.3 * np.sin(t * 1500) * (np.sin(t * 2 * np.pi * 4) > 0)).astype(np.float32)
    noise = rng.normal(0, 0.3, 12_000).astype(np.float32)
    features = routed.features([tone, noise], tiny_models.feature_extractor())
    with torch.no_grad():
        weights = routed.first_expert_weight(routed.expert_states(**features)[2])
        mixed = routed(**features).last_hidden_state
        alone = {name: expert(**features).last_hidden_state for name, expert in experts.items()}
    assert weights[0] > 0.5 > weights[1]  # the bursts go to the speech expert, the noise to the sound expert
    expected = torch.stack([weights[i] * alone["speech"][i] + (1 - weights[i]) * alone["sounds"][i] for i in range(2)])
    torch.testing.assert_close(mixed, expected)
    # a second sound expert that hears fixed mel statistics of the training clips (world.train_audio --fixed-mel-statistics)
    from world.train_audio import with_training_statistics

    with_training_statistics(folders["sounds"], world / "audio" / "train", tmp_path / "spectrum", clips=10)
    spectrum = load_audio_encoder(tmp_path / "spectrum").eval()
    statistics = spectrum.config.audio_config.mel_statistics
    assert len(statistics["mean"]) == 80 and statistics["mean"] != [0.0] * 80 and min(statistics["std"]) > 0
    # and on each side a second expert (here the same one on both), each side's states the mean of its two
    both = route_ears.main(["--speech", str(folders["speech"]), str(tmp_path / "spectrum"), "--sounds", str(folders["sounds"]), str(tmp_path / "spectrum"),
                            "--world", str(world), "--clip", str(clip), "--out", str(tmp_path / "both"), "--clips-per-kind", "10", "--threads", "1"])
    assert both["routed_right"]["test_sound_sources"] == 1.0 and len(both["sounds"]) == len(both["speech"]) == 2
    routed = load_audio_encoder(tmp_path / "both" / "final").eval()
    features = routed.features([tone, noise], tiny_models.feature_extractor())
    with torch.no_grad():
        weights = routed.first_expert_weight(routed.expert_states(**features)[2])
        heard = spectrum(**spectrum.features([tone, noise], tiny_models.feature_extractor())).last_hidden_state
        speech_side, sound_side = (alone["speech"] + heard) / 2, (alone["sounds"] + heard) / 2
        torch.testing.assert_close(routed(**features).last_hidden_state,
                                   torch.stack([weights[i] * speech_side[i] + (1 - weights[i]) * sound_side[i] for i in range(2)]))
    plain = route_ears.main(["--speech", str(folders["speech"]), "--sounds", str(folders["sounds"]), "--world", str(world),
                             "--clip", str(clip), "--out", str(tmp_path / "plain"), "--clips-per-kind", "10", "--threads", "1", "--no-harden"])
    assert plain["router_clips"] == {"spoken": 10, "made_harder": 0, "sounds": 10}
    with pytest.raises(SystemExit):  # a folder without weights: one line, before anything loads
        route_ears.main(["--speech", str(tmp_path / "missing"), "--sounds", str(folders["sounds"]), "--world", str(world)])
    with pytest.raises(SystemExit):  # no built world
        route_ears.main(["--speech", str(folders["speech"]), "--sounds", str(folders["sounds"]), "--world", str(tmp_path / "nowhere")])
