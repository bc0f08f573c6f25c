"""What the world's evaluations measure and how they word it: world.evaluate's tables (per engine and voice, per
everyday sound), the audio stage's count of misheard words (world.train_audio.misheard), and the picture
world.edit_eval asks a sound to change."""

from __future__ import annotations

from world.scenes import SOUND_CLASSES


def test_the_picture_to_edit_differs_from_the_spoken_caption_in_every_attribute():
    from world.edit_eval import other_scene
    from world.scenes import all_scenes, caption

    for scene in all_scenes():
        other = other_scene(scene)
        assert all(other[k] != scene[k] for k in ("shape", "colour", "position"))
        assert other["caption"] == caption(other["shape"], other["colour"], other["position"])


def test_evaluation_table_names_the_held_out_engine_and_each_engine_and_voice():
    from world.evaluate import markdown

    def scores(value, images):
        return {"colour": value, "shape": value, "position": value, "all": value, "images": images}

    results = {"settings": {"steps": 25, "guidance": 3.0, "test_voices": ["flite/rms", "pico/en-GB"], "held_out_engine": "piper", "captions": 72},
               "spoken": scores(0.5, 144), "spoken_engine": scores(0.25, 72), "text": scores(1.0, 144), "random": scores(0.1, 144),
               "per_engine": {"flite": scores(0.75, 72), "pico": scores(0.25, 72), "piper": scores(0.25, 72)},
               "per_voice": {"flite/rms": scores(0.75, 72), "pico/en-GB": scores(0.25, 72), "piper/joe": scores(0.25, 72)}}
    table = markdown(results)
    assert "| spoken caption → image (the engine never heard: piper) | 25.0 % | 25.0 % | 25.0 % | 25.0 % |" in table
    assert "| flite | 72 | 75.0 % | 75.0 % | 75.0 % | 75.0 % |" in table
    assert "| piper/joe | 72 | 25.0 % |" in table
    assert "144 clips of 2 held-out voices, 72 of the held-out engine (72 captions)" in table and "used by no stage" not in table
    results["spoken_unheard"], results["settings"]["unheard_engines"] = scores(0.5, 144), ["rhvoice", "sam"]
    table = markdown(results)
    assert "| spoken caption → image (engines outside the named list, used by no stage: rhvoice, sam) | 50.0 % |" in table
    assert "72 of the held-out engine, 144 of engines no stage uses (72 captions)" in table


def test_misheard_counts_which_word_the_top_caption_put_for_which_commonest_first():
    from world.train_audio import misheard

    said = [{"colour": "blue", "shape": "circle", "position": "left"}] * 3 + [{"colour": "red", "shape": "cross", "position": "right"}]
    heard = [{"colour": "green", "shape": "circle", "position": "right"}, {"colour": "blue", "shape": "circle", "position": "right"},
             {"colour": "blue", "shape": "circle", "position": "left"}, {"colour": "red", "shape": "square", "position": "right"}]
    assert misheard(heard, said) == {"left → right": 2, "blue → green": 1, "cross → square": 1}
    assert list(misheard(heard, said))[0] == "left → right"
    assert misheard(said, said) == {}


def test_the_sound_table_gives_each_condition_per_held_out_set_and_each_class():
    from world.evaluate import sound_markdown

    def scores(value, images):
        return {"sound": value, "all": value, "images": images}

    part = {"direct": scores(0.8, 64), "text": scores(1.0, 64), "random": scores(0.05, 64), "cascade": scores(0.5, 64),
            "per_class": {"dog": scores(0.75, 4)}, "sources": ["scratch"]}
    table = sound_markdown({"sound_recordings": part, "sound_sources": {**part, "direct": scores(0.6, 75), "per_class": {}}})
    assert "| sound → image (direct) | 80.0 % (64 clips) | 60.0 % (75 clips) |" in table
    assert "| cascade baseline: CLAP's nearest caption → text → image | 50.0 % (64 clips) |" in table
    assert f"| chance | {100 / len(SOUND_CLASSES):.1f} % |" in table
    assert "| a dog barking | 75 % (4) | – |" in table
    assert sound_markdown({}) == ""
