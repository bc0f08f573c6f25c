"""examples.make_examples: the app's sound examples are the held-out-source recordings the given models draw right
(for at least 3 of 4 seeds), one a class, with their attribution and the pass rate; nothing else is chosen."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE


def test_sound_examples_are_each_classes_first_recording_drawn_right(tmp_path, monkeypatch):
    import generate.pipeline
    import world.checker
    import world.sounds
    from examples import make_examples

    recordings = tmp_path / "recordings"
    rows = []
    for name, label, amplitude, split in (("bark_a.wav", "dog", 0.9, "test_sources"), ("bark_b.wav", "dog", 0.9, "test_sources"),
                                          ("meow.wav", "cat", 0.1, "test_sources"), ("silent.wav", "cat", 0.0, "test_sources"),
                                          ("trained.wav", "cow", 0.9, "train")):
        (recordings / "pkg").mkdir(parents=True, exist_ok=True)
        wave = amplitude * np.sin(np.linspace(0, 400 * np.pi, SAMPLE_RATE)).astype(np.float32)
        sf.write(recordings / "pkg" / name, wave, SAMPLE_RATE)
        rows.append({"class": label, "package": "pkg", "path": name, "split": split, "licence": "CC0"})

    class Drawn:  # a picture that "shows" a dog where the sound was loud, rain where it was quiet
        def __init__(self, path, seed):
            self.loud, self.seed = np.abs(sf.read(path)[0]).max() > 0.5, seed

    class FakePipeline:
        def set_progress_bar_config(self, **kwargs):
            pass

        def __call__(self, audio, num_images_per_prompt, **kwargs):
            return type("Output", (), {"images": [Drawn(audio, seed) for seed in range(num_images_per_prompt)]})()

    monkeypatch.setattr(world.sounds, "read_manifest", lambda: rows)
    monkeypatch.setattr(generate.pipeline.AudioToImagePipeline, "from_pretrained", classmethod(lambda cls, *a, **k: FakePipeline()))
    # a loud sound is drawn as a dog for 3 seeds of 4 (enough), a quiet one as rain
    monkeypatch.setattr(world.checker, "check_sound", lambda image: ("dog" if image.seed < 3 else "rain") if image.loud else "rain")
    monkeypatch.setattr(make_examples, "HERE", tmp_path / "examples")
    folder = tmp_path / "examples" / "world" / "sounds"
    folder.mkdir(parents=True)
    (folder / "old.wav").write_bytes(b"")  # an example of earlier models is not kept

    make_examples.write_sound_examples(tmp_path / "models", recordings)
    assert sorted(p.name for p in folder.glob("*.wav")) == ["dog.wav"]  # the cat was drawn as rain; the trained cow is not a candidate
    attribution = (folder / "ATTRIBUTION.md").read_text()
    assert "| dog.wav | a dog barking | pkg | `bark_a.wav` | CC0 |" in attribution  # the class's first recording drawn right
    assert "2 of 3 were drawn as their class" in attribution  # the silent one is not tried
    assert np.allclose(sf.read(folder / "dog.wav")[0], sf.read(recordings / "pkg" / "bark_a.wav")[0], atol=1e-3)
