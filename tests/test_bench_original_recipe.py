"""bench/original_recipe.py: the original's loss as the bench reproduces it, the data both recipes train on, the
results file each run adds to, and the README's table, which must be that file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench import original_recipe as recipe

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- original_recipe: python bench/original_recipe.py --table -->", "<!-- /original_recipe -->"


def row(minutes, name, r_at_1, cosine):
    return {"minutes": minutes, "recipe": name, "clips_per_second": 30.0, "steps": 10, "clips": 480, "training_minutes": minutes,
            "R@1": r_at_1, "R@5": 0.5, "all_three_right": r_at_1, "per_token_cosine": cosine, "held_out_clips": 360, "threads": 1,
            "command": "python bench/original_recipe.py", "date": "2026-12-03"}


def test_the_original_recipes_loss_runs_one_way_over_every_position():
    """The stand-in for the original's Contrastive_loss: audio → caption cross-entropy on the per-token cosine averaged
    over all positions (BOS and padding too), with no caption → audio term."""
    torch.manual_seed(0)
    audio, text = torch.randn(4, 5, 6), torch.randn(4, 5, 6)
    logits = torch.tensor([[sum(torch.nn.functional.cosine_similarity(audio[i, t], text[j, t], dim=0).item() for t in range(5)) / 5 / 0.15
                            for j in range(4)] for i in range(4)])
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert torch.allclose(recipe.original_contrastive_loss(audio, text, 0.15), expected, atol=1e-5)
    changed = text.clone()
    changed[:, 0] += 3.0  # BOS counts
    assert not torch.allclose(recipe.original_contrastive_loss(audio, changed), recipe.original_contrastive_loss(audio, text))
    symmetric = (expected + torch.nn.functional.cross_entropy(logits.T, torch.arange(4))) / 2
    assert not torch.allclose(recipe.original_contrastive_loss(audio, text, 0.15), symmetric, atol=1e-3)  # one way only


def test_both_recipes_train_on_the_plain_spoken_captions_only(tmp_path):
    world = tmp_path / "world"
    rows = {"train": [{"file_name": "000000.wav", "caption": "a red circle on the left"},
                      {"file_name": "hard_000000.wav", "caption": "a red circle on the left", "hard": {"condition": "carrier"}},
                      {"file_name": "sound_dog_00000.wav", "caption": "a dog barking", "sound": "dog"}],
            "test": [{"file_name": "000000.wav", "caption": "a blue square in the middle"}]}
    for split, split_rows in rows.items():
        (world / "audio" / split).mkdir(parents=True)
        for r in split_rows:
            sf.write(world / "audio" / split / r["file_name"], np.zeros(1600, np.float32), 16000)
        (world / "audio" / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    data = recipe.speech_only_data(world, tmp_path / "out")
    assert [r["file_name"] for r in recipe.read_metadata(data / "train")] == ["000000.wav"]
    assert [r["caption"] for r in recipe.read_metadata(data / "test")] == ["a blue square in the middle"]
    assert sorted(p.name for p in (data / "train").iterdir()) == ["000000.wav", "metadata.jsonl"]


def test_a_rerun_replaces_its_own_row_and_keeps_the_others(tmp_path):
    results = tmp_path / "results.json"
    recipe.save_record(results, row(5, "ours", 0.1, 0.6))
    recipe.save_record(results, row(5, "original", 0.2, 0.3))
    recipe.save_record(results, row(15, "ours", 0.3, 0.7))
    recipe.save_record(results, row(5, "ours", 0.25, 0.65))
    saved = json.loads(results.read_text())
    assert [(r["minutes"], r["recipe"], r["R@1"]) for r in saved] == [(5, "original", 0.2), (5, "ours", 0.25), (15, "ours", 0.3)]


def test_the_table_marks_the_better_recipe_of_each_budget():
    table = recipe.results_table([row(5, "original", 0.2, 0.3), row(5, "ours", 0.1, 0.6)]).splitlines()
    assert table[2].startswith("| 5 | original | 5.0 |") and "**0.200**" in table[2] and "**0.300**" not in table[2]
    assert table[3].startswith("| 5 | ours | 5.0 |") and "**0.600**" in table[3] and "**0.100**" not in table[3]


def test_the_readme_table_is_the_committed_results_file():
    readme = (ROOT / "README.md").read_text()
    assert README_START in readme and README_END in readme, "the README's original-recipe table lost its markers"
    shown = readme.split(README_START)[1].split(README_END)[0].strip()
    assert shown == recipe.results_table(json.loads(recipe.RESULTS.read_text())), \
        "the README's table differs from bench/results/original_recipe.json: paste `python bench/original_recipe.py --table`"


def test_ours_is_ahead_of_the_original_at_every_budget_measured():
    rows = json.loads(recipe.RESULTS.read_text())
    budgets = sorted({r["minutes"] for r in rows})
    assert len(budgets) >= 3
    for minutes in budgets:
        by_recipe = {r["recipe"]: r for r in rows if r["minutes"] == minutes}
        assert by_recipe["ours"]["R@1"] > by_recipe["original"]["R@1"], f"{minutes} min: the original retrieves better"
        assert by_recipe["ours"]["per_token_cosine"] > by_recipe["original"]["per_token_cosine"], f"{minutes} min"
