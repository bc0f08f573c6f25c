"""world.rebuild, the orchestration of the stages: their order, a rebuild from the committed speech world
(--from-committed), a killed rebuild that resumes, and the results table (stage times and their wording) it writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


def test_rebuild_runs_the_picture_side_first_and_pretraining_only_when_asked(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild

    ran, commands = [], []
    monkeypatch.setattr(rebuild.subprocess, "run", lambda cmd, **kw: ran.append(cmd[2]) or commands.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    paths = ["--world", str(tmp_path / "w"), "--runs", str(tmp_path / "r"), "--models", str(tmp_path / "m")]
    rebuild.main(paths)
    assert ran == ["world.build", "world.sounds", "world.train_clip", "world.train_vae", "world.train_unet", "world.train_unet",
                   "world.train_words", "world.train_vae", "world.train_unet", "world.train_audio", "world.train_audio",
                   "world.train_audio", "world.train_audio", "world.train_audio", "world.train_audio", "world.train_audio", "world.train_audio",
                   "world.train_audio", "world.route_ears", "world.train_clap", "world.train_clap", "world.assemble",
                   "world.evaluate", "world.edit_eval"]
    runs = tmp_path / "r"
    by_out = {Path(c[c.index("--out") + 1]).name: c for c in commands if "--out" in c}
    # each later learning-rate cycle starts from the weights the cycle before it finished; a sound stage from the committed
    # speech world where this machine has no run of the stage before it (here none ran: subprocess.run is a stand-in)
    for out, init in (("sharpen", runs / "unet/unet"), ("refine", runs / "audio/final"), ("polish", runs / "refine/final"),
                      ("sound_vae", rebuild.STAGE_INPUTS / "vae/vae"), ("sound_unet", rebuild.STAGE_INPUTS / "sharpen/unet"),
                      ("sound_ears", rebuild.STAGE_INPUTS / "polish/final"), ("sound_mix", rebuild.STAGE_INPUTS / "sound_ears/final"),
                      ("sound_more", rebuild.STAGE_INPUTS / "sound_mix/final"), ("speech_expert", rebuild.STAGE_INPUTS / "polish/final"),
                      ("sound_expert", rebuild.STAGE_INPUTS / "sound_more/final"), ("sound_spectrum", rebuild.STAGE_INPUTS / "sound_more/final")):
        assert by_out[out][by_out[out].index("--init") + 1] == str(init), out
    assert by_out["words"][by_out["words"].index("--clip") + 1] == str(rebuild.STAGE_INPUTS / "clip")
    for out in ("sound_unet", "audio", "refine", "polish", "sound_ears", "sound_mix", "sound_more", "speech_expert", "sound_expert", "sound_spectrum"):  # the text tower that knows the sounds' words
        assert by_out[out][by_out[out].index("--clip") + 1] == str(runs / "words"), out
    route = by_out["route"]  # the shipped ears: the experts, each trained on its kind alone
    assert route[route.index("--speech") + 1] == str(runs / "speech_expert/final")
    assert route[route.index("--sounds") + 1 : route.index("--sounds") + 3] == [str(runs / "sound_expert/final"), str(runs / "sound_spectrum/final")]
    for expert, kind in (("speech_expert", "speech"), ("sound_expert", "sounds"), ("sound_spectrum", "sounds")):
        assert by_out[expert][by_out[expert].index("--only") + 1] == kind, expert
    # the same recipe as sound_expert, heard with fixed statistics
    assert by_out["sound_spectrum"] == [part.replace("sound_expert", "sound_spectrum") for part in by_out["sound_expert"]][:-len(rebuild.ALIGN_RECIPE)] + ["--fixed-mel-statistics", *rebuild.ALIGN_RECIPE]
    assert "--speech-only" in by_out["speech_clap"] and "--init" not in by_out["speech_clap"]  # the scorer: speech first, then the sounds
    assert by_out["clap"][by_out["clap"].index("--init") + 1] == str(rebuild.STAGE_INPUTS / "speech_clap/clap") and "--speech-only" not in by_out["clap"]
    assert by_out["sound_unet"][by_out["sound_unet"].index("--vae") + 1] == str(runs / "sound_vae")
    assert by_out["unet"][by_out["unet"].index("--clip") + 1] == str(runs / "clip")
    for stage in ("build", "sounds", "clip", "vae", "unet", "sharpen", "words", "sound_vae", "sound_unet"):  # the picture side finished
        marker = rebuild.finished_marker(stage, tmp_path / "w", runs, tmp_path / "m")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    (runs / "vae" / "vae").mkdir(parents=True)  # a run of this machine's own is preferred to the committed copy
    assert rebuild.stage_input(runs, "vae/vae") == runs / "vae/vae"
    ran.clear()
    rebuild.main([*paths, "--pretrain-speech", "--from", "speech"])  # the sound side again, with pretraining
    assert ran == ["world.sentences", "world.pretrain_speech", *["world.train_audio"] * 9, "world.route_ears",
                   "world.train_clap", "world.train_clap", "world.assemble", "world.evaluate", "world.edit_eval"]


def test_a_rebuild_from_the_committed_stages_runs_only_the_data_the_assembly_and_the_evaluations(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild
    from world.stage_inputs import COMMITTED_PARTS, RESTORED

    ran, commands = [], []
    monkeypatch.setattr(rebuild.subprocess, "run", lambda cmd, **kw: ran.append(cmd[2]) or commands.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    runs = tmp_path / "r"
    rebuild.main(["--world", str(tmp_path / "w"), "--runs", str(runs), "--models", str(tmp_path / "m"), "--from-committed"])
    assert ran == ["world.build", "world.sounds", "world.route_ears", "world.assemble", "world.evaluate", "world.edit_eval"]
    build = commands[0]
    assert build[build.index("--clips-per-caption") + 1] == "48"
    for stage, parts in COMMITTED_PARTS.items():  # every committed stage is restored into the fresh runs folder, whole
        for part in parts:
            assert (rebuild.STAGE_INPUTS / stage / part).exists() and (runs / stage / part).exists(), (stage, part)
        assert (runs / stage / RESTORED).exists(), stage
    route = next(c for c in commands if c[2] == "world.route_ears")  # the shipped ears come from the restored experts
    assert route[route.index("--speech") + 1] == str(runs / "speech_expert/final")
    assert route[route.index("--sounds") + 1 : route.index("--sounds") + 3] == [str(runs / "sound_expert/final"), str(runs / "sound_spectrum/final")]
    assert all((runs / expert / "final").exists() for expert in ("speech_expert", "sound_expert", "sound_spectrum"))
    assemble = next(c for c in commands if c[2] == "world.assemble")  # the restored scorer is what it ships
    assert assemble[assemble.index("--runs") + 1] == str(runs) and (runs / "clap/clap").exists()
    for stage in ("words", "sound_vae", "sound_unet", "sound_ears", "sound_mix", "sound_more", "speech_expert", "sound_expert", "sound_spectrum", "speech_clap", "clap"):  # finished, so a plain rebuild after it does not train them again
        assert rebuild.finished_marker(stage, tmp_path / "w", runs, tmp_path / "m").exists(), stage
        recorded = json.loads((rebuild.STAGE_INPUTS / stage / "stage.json").read_text())["seconds"]
        assert rebuild.own_seconds(stage, tmp_path / "w", runs, tmp_path / "m") == recorded > 0, stage  # the report gives its own run's time
    (tmp_path / "w").mkdir(exist_ok=True)
    table = rebuild.results_markdown(runs, {"stages": {}}, "python -m world.rebuild --from-committed", tmp_path / "w", tmp_path / "m")
    assert rebuild.own_seconds("polish", tmp_path / "w", runs, tmp_path / "m") is None  # committed without a record of its time
    assert "| sound_ears | " in table and "| sound_more | " in table and "| polish | " not in table and "trained earlier and committed in models/world_stages" in table


def test_a_plain_rebuild_after_one_from_the_committed_stages_goes_on_from_them(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild
    from world.stage_inputs import RESTORED

    world, runs, models = tmp_path / "w", tmp_path / "r", tmp_path / "m"
    paths = ["--world", str(world), "--runs", str(runs), "--models", str(models)]
    ran = []

    def fake_run(cmd, **kwargs):  # a stage "trains": it writes its marker
        ran.append(cmd[-1])
        marker = rebuild.finished_marker(cmd[-1], world, runs, models)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rebuild, "stage_command", lambda stage, *a: ["python", "-m", stage])
    monkeypatch.setattr(rebuild.subprocess, "run", fake_run)
    monkeypatch.setattr(rebuild, "RESULTS_FILE", tmp_path / "RESULTS.md")  # a finished evaluation rewrites it
    rebuild.main([*paths, "--from-committed"])
    assert ran == ["build", "sounds", "route", "assemble", "evaluate", "edit"]
    ran.clear()
    rebuild.main(paths)  # the restored stages have no markers of their own (only what later stages read is committed)
    assert ran == []
    rebuild.main([*paths, "--from", "route"])  # route and every stage after it, the committed scorers among them
    assert ran == ["route", "speech_clap", "clap", "assemble", "evaluate", "edit"]
    ran.clear()
    rebuild.main([*paths, "--from", "sound_unet"])  # naming a committed stage trains it and every later one, no earlier one
    assert ran == [stage for stage in rebuild.STAGES[rebuild.STAGES.index("sound_unet"):] if stage not in rebuild.PRETRAINING]
    assert (runs / "sound_unet.previous" / RESTORED).exists()  # the restored run set aside, as a finished one is
    ran.clear()
    rebuild.main([*paths, "--from", "polish"])  # killed in polish: its folder holds that run, not the restored one
    (runs / "polish" / "final" / "model.safetensors").unlink()
    (runs / "polish" / "checkpoints").mkdir()
    (runs / "redo.json").write_text(json.dumps(rebuild.STAGES[rebuild.STAGES.index("polish"):]))
    ran.clear()
    rebuild.main(paths)  # the plain command resumes it where it stopped, not set aside
    assert ran[0] == "polish" and (runs / "polish" / "checkpoints").exists()


def test_a_stage_run_by_its_own_command_reports_the_time_its_stage_record_gives(tmp_path):
    from world import rebuild
    from world.stage_inputs import RECORD

    runs = tmp_path / "r"
    final = runs / "speech_expert" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"")  # copied in at once: the files' times say nothing of the run
    assert rebuild.own_seconds("speech_expert", tmp_path / "w", runs, tmp_path / "m") == 0.0
    (runs / "speech_expert" / RECORD).write_text(json.dumps({"stage": "speech_expert", "seconds": 716.0}))
    assert rebuild.own_seconds("speech_expert", tmp_path / "w", runs, tmp_path / "m") == 716.0


def test_a_killed_rebuild_from_a_stage_resumes_with_the_plain_command_and_never_resumes_an_old_finished_run(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild

    world, runs, models = tmp_path / "w", tmp_path / "r", tmp_path / "m"
    paths = ["--world", str(world), "--runs", str(runs), "--models", str(models)]
    ran, kill_at, seen_while_running = [], [], []

    def fake_run(cmd, **kwargs):  # a stage "trains": a checkpoint in its folder, then its marker, unless killed first
        stage = cmd[-1]
        ran.append(stage)
        time.sleep(0.2 if stage in kill_at else 0.05)  # several heartbeats (times are saved to 0.1 s)
        if stage in kill_at:  # what a hard kill (no exit code) would leave behind: the time the heartbeat saved so far
            seen_while_running.append(json.loads((runs / "timings.json").read_text())["stopped"][stage])
        folder = rebuild.run_folder(stage, world, runs, models)
        if folder is not None:
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            (folder / "checkpoints" / f"checkpoint-{len(ran)}").write_text(stage)
        if stage in kill_at:
            return subprocess.CompletedProcess(cmd, 1)
        marker = rebuild.finished_marker(stage, world, runs, models)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rebuild, "stage_command", lambda stage, *a: ["python", "-m", stage])
    monkeypatch.setattr(rebuild, "HEARTBEAT_SECONDS", 0.01)
    monkeypatch.setattr(rebuild, "RESULTS_FILE", tmp_path / "RESULTS.md")  # a finished evaluation rewrites it
    monkeypatch.setattr(rebuild.subprocess, "run", fake_run)
    rebuild.main(paths)
    everything = [s for s in rebuild.STAGES if s not in rebuild.PRETRAINING]
    assert ran == everything
    old_audio = sorted((runs / "audio" / "checkpoints").iterdir())

    ran.clear()
    kill_at.append("refine")
    with pytest.raises(SystemExit):
        rebuild.main([*paths, "--from", "audio"])
    assert ran == ["audio", "refine"]
    assert sorted((runs / "audio.previous" / "checkpoints").iterdir())[0].name == old_audio[0].name  # the old run kept aside
    assert [c.name for c in (runs / "audio" / "checkpoints").iterdir()] == ["checkpoint-1"]  # the new run did not resume it
    killed = sorted(c.name for c in (runs / "refine" / "checkpoints").iterdir())
    timings = json.loads((runs / "timings.json").read_text())
    killed_seconds = timings["stopped"]["refine"]  # the killed attempt's time was saved while it ran
    assert killed_seconds >= 0.04 and "refine" not in timings.get("interrupted", {})
    assert seen_while_running[0] > 0  # saved while the stage still ran, not only when it exited

    ran.clear()
    kill_at[:] = ["assemble"]  # killed again, in a stage whose marker (models/) is no run folder's
    with pytest.raises(SystemExit):
        rebuild.main(paths)  # the plain command: refine resumes its own checkpoints, and every stage after it is redone
    assert ran == everything[everything.index("refine"):everything.index("assemble") + 1]
    assert killed[0] in {c.name for c in (runs / "refine" / "checkpoints").iterdir()}
    timings = json.loads((runs / "timings.json").read_text())  # refine's time is both attempts'
    assert timings["interrupted"]["refine"] == killed_seconds and "refine" not in timings["stopped"]
    assert rebuild.stage_seconds(timings, "refine") == pytest.approx(killed_seconds + timings["stages"]["refine"])
    ran.clear()
    kill_at.clear()
    rebuild.main(paths)  # the old assemble, evaluate and edit markers still stand, yet all three are redone
    assert ran == ["assemble", "evaluate", "edit"]
    assert json.loads((runs / "redo.json").read_text()) == []
    ran.clear()
    rebuild.main(paths)
    assert ran == []
    ran.clear()
    rebuild.main([*paths, "--from", "refine"])  # refine redone from scratch: the old run's stopped attempt is not its time
    assert "refine" not in json.loads((runs / "timings.json").read_text()).get("interrupted", {})

    ran.clear()  # a plain run that finds a stage unfinished redoes every stage after it, even after being killed itself
    rebuild.finished_marker("audio", world, runs, models).unlink()
    kill_at[:] = ["refine"]
    with pytest.raises(SystemExit):
        rebuild.main(paths)
    ran.clear()
    kill_at.clear()
    rebuild.main(paths)
    assert ran == everything[everything.index("refine"):]


def test_results_name_the_precision_and_extra_negatives_of_each_alignment_stage(tmp_path):
    from world.rebuild import results_markdown

    for stage, precision, negatives in (("refine", None, 0), ("polish", "bf16", 72)):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "args.json").write_text(json.dumps({"mixed_precision": precision, "extra_negatives": negatives}))
        (tmp_path / stage / "metrics.json").write_text(json.dumps({"latest": {"step": 4400, "cosine": 0.89}}))
    table = results_markdown(tmp_path, {"stages": {"refine": 60.0, "polish": 120.0}}, "python -m world.rebuild")
    assert "| refine | 1.0 | align.train in fp32, 4400 steps;" in table
    assert "| polish | 2.0 | align.train in bf16 autocast, 72 cached captions added as negatives a step, 4400 steps;" in table and "| **total** | **3.0** |" in table


def test_results_say_which_stages_ran_on_an_earlier_build_of_the_world(tmp_path):
    import os

    from world.rebuild import results_markdown

    runs, world = tmp_path / "runs", tmp_path / "world"
    for stage in ("refine", "polish"):
        (runs / stage / "final").mkdir(parents=True)
        (runs / stage / "final" / "model.safetensors").write_bytes(b"")
    world.mkdir()
    (world / "world.json").write_text("{}")
    os.utime(world / "world.json", (2_000, 2_000))
    os.utime(runs / "refine" / "final" / "model.safetensors", (1_000, 1_000))  # refine finished before the build
    os.utime(runs / "polish" / "final" / "model.safetensors", (3_000, 3_000))  # polish after it
    table = results_markdown(runs, {"stages": {"build": 60.0, "refine": 60.0, "polish": 60.0}},
                             "python -m world.rebuild", world, tmp_path / "models")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "earlier build" in rows["refine"]
    assert "earlier build" not in rows["polish"] and "earlier build" not in rows["build"]


def test_results_say_when_the_clap_started_again_from_another_seed(tmp_path):
    from world.rebuild import results_markdown

    rows = {}
    for seeds in ([0], [0, 1], [0, 1, 2]):
        (tmp_path / "runs" / "clap").mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / "clap" / "metrics.json").write_text(json.dumps({"steps": 4500, "seeds": seeds, "held_out_retrieval": {"test": {"caption": 0.5}}}))
        table = results_markdown(tmp_path / "runs", {"stages": {"clap": 600.0}}, "python -m world.rebuild", None, tmp_path / "models")
        rows[len(seeds)] = next(line for line in table.splitlines() if line.startswith("| clap |"))
    assert "seed" not in rows[1] and "from seed 1 (seed 0 stalled above log 6 and was dropped)" in rows[2]
    assert "from seed 2 (seeds 0, 1 stalled above log 6 and were dropped)" in rows[3]


def test_a_stage_run_by_its_own_command_gets_its_own_record_s_time_in_the_results(tmp_path):
    from world.rebuild import results_markdown

    world, runs = tmp_path / "w", tmp_path / "runs"
    (runs / "sound_vae").mkdir(parents=True)
    (runs / "sound_vae" / "metrics.json").write_text(json.dumps({"steps": 800, "seconds": 900.0, "reconstruction_checker": {"all": 1.0}}))
    world.mkdir()
    (world / "world.json").write_text("{}")
    table = results_markdown(runs, {"stages": {"clap": 600.0}}, "python -m world.rebuild", world, tmp_path / "models")
    row = next(line for line in table.splitlines() if line.startswith("| sound_vae |"))
    assert "| 15.0 |" in row and "its own command" in row and "800 steps" in row
    assert "| **total** | **25.0** |" in table


def test_a_finished_stage_is_committed_in_float16_and_restored_where_a_machine_has_no_finished_run(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from world import stage_inputs

    runs, committed = tmp_path / "runs", tmp_path / "committed"
    monkeypatch.setattr(stage_inputs, "STAGE_INPUTS", committed)
    (runs / "sound_vae" / "vae").mkdir(parents=True)
    weights = {"w": torch.randn(3, 4), "steps": torch.arange(3)}
    save_file(weights, runs / "sound_vae" / "vae" / "diffusion_pytorch_model.safetensors")
    (runs / "sound_vae" / "vae" / "config.json").write_text("{}")
    (runs / "sound_vae" / "latents.safetensors").write_bytes(b"a cache later stages do not read")
    with pytest.raises(SystemExit, match="lacks metrics.json: finish the sound_vae stage first"):
        stage_inputs.commit("sound_vae", runs, committed)
    (runs / "sound_vae" / "metrics.json").write_text('{"seconds": 60}')
    with pytest.raises(SystemExit, match="not a stage whose output can be committed"):
        stage_inputs.commit("evaluate", runs, committed)
    stage_inputs.commit("sound_vae", runs, committed)
    stored = load_file(committed / "sound_vae" / "vae" / "diffusion_pytorch_model.safetensors")
    assert stored["w"].dtype == torch.float16 and stored["steps"].dtype == torch.int64
    assert torch.allclose(stored["w"].float(), weights["w"], atol=1e-3)
    assert not (committed / "sound_vae" / "latents.safetensors").exists() and stage_inputs.committed("sound_vae")

    fresh = tmp_path / "fresh"
    (fresh / "sound_vae").mkdir(parents=True)  # a killed run of the stage: moved aside, the committed one takes its place
    (fresh / "sound_vae" / "log.txt").write_text("killed")
    assert stage_inputs.restore("sound_vae", fresh)
    assert (fresh / "sound_vae.unfinished" / "log.txt").exists() and (fresh / "sound_vae" / stage_inputs.RESTORED).exists()
    assert (fresh / "sound_vae" / "metrics.json").read_text() == '{"seconds": 60}'
    assert json.loads((fresh / "sound_vae" / stage_inputs.RESTORED).read_text())["seconds"] == 60  # the time the stage took where it ran
    assert not stage_inputs.restore("sound_vae", fresh)  # a finished run is never replaced
    assert not stage_inputs.restore("words", fresh)  # nothing committed of it


def test_a_report_written_again_names_the_rebuild_it_describes(tmp_path, monkeypatch):
    from world import rebuild

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "timings.json").write_text(json.dumps({"stages": {"evaluate": 60.0}}))
    monkeypatch.setattr(rebuild, "RESULTS_FILE", tmp_path / "RESULTS.md")
    for flags, command in (([], "`python -m world.rebuild`"), (["--from-committed"], "`python -m world.rebuild --from-committed`")):
        rebuild.main(["--runs", str(runs), "--world", str(tmp_path / "w"), "--models", str(tmp_path / "m"), "--report", *flags])
        assert f"Produced by {command} on" in (tmp_path / "RESULTS.md").read_text()


def test_results_name_the_experts_the_route_stage_mixed(tmp_path):
    from world.rebuild import results_markdown

    (tmp_path / "route").mkdir()
    for speech, expected in (("runs/world/speech_expert/final", "speech_expert's ears, sound_expert's and sound_spectrum's (averaged), and their router"),
                             (["a/speech_expert/final", "a/speech_spectrum/final"],
                              "speech_expert's and speech_spectrum's (averaged) ears, sound_expert's and sound_spectrum's (averaged)")):
        (tmp_path / "route" / "metrics.json").write_text(json.dumps(
            {"speech": speech, "sounds": ["a/sound_expert/final", "a/sound_spectrum/final"], "routed_right": {"train": 0.99}}))
        assert expected in results_markdown(tmp_path, {"stages": {"route": 60.0}}, "python -m world.rebuild")
