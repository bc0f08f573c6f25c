"""Stage: the world's audio backbone learns speech itself (CTC on characters) before it is aligned.

    python -m world.sentences --out data/world/speech --clips 6000
    python -m world.pretrain_speech --speech data/world/speech --out runs/world/speech --minutes 20
    python -m align.train --audio-model runs/world/speech/final ...     # (world.train_audio --pretrained does this)

The real system aligns w2v-BERT 2.0, which had heard millions of hours of speech; the world's encoder starts from
nothing. Here the world-size `Wav2Vec2BertModel` (world.train_audio.backbone_config) learns to spell what
many voices say (world.sentences: thousands of sentences, many engines, microphone augmentation) with a CTC
head on its 20 ms frames (`Wav2Vec2BertForCTC`, `add_adapter=False`: the adapter's 80 ms tokens are too coarse
for characters). Then `align.train --audio-model <out>/final` gives it a fresh adapter and aligns it, exactly as
a user aligns facebook/w2v-bert-2.0.

Cost is spent once: every clip's input features are computed a single time, batched in torch
(hearing.features.BatchedFeatureExtractor), and kept in memory as fp16 (cached in <out>/features.pt, so a resumed
run does not recompute them). Each step masks random time spans and mel bands of the features (SpecAugment); the first epoch runs
from the shortest clips up (SortaGrad), which gets CTC off its all-blank plateau sooner.
Training stops at --steps or --minutes, whichever comes first (the learning rate follows world.stage.Budget);
a checkpoint (<out>/checkpoint.pt: weights, optimizer, step, elapsed time, RNG) is written every
--checkpoint-minutes, and a second call continues from it. The held-out voices' character error rate is
measured on <speech>/test and <speech>/test_engine at every checkpoint and at the end.

What <out> holds at the end:

    final/        the backbone: a plain Wav2Vec2BertModel (config.json, model.safetensors) + preprocessor_config.json,
                  what `align.train --audio-model` takes
    ctc/          the whole Wav2Vec2BertForCTC + vocab.json (to transcribe with `transcribe`)
    metrics.json  steps, samples/s, training loss, CER per held-out set and per engine
    log.txt       progress lines
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertForCTC

from hearing.audio import to_mono_16k
from hearing.features import BatchedFeatureExtractor
from world.sentences import ALPHABET, normalise
from align.data import read_metadata
from world.stage import Budget, Log, stage_parser, update, use_threads, write_json

BLANK = 0  # CTC blank = the config's pad_token_id; characters are 1..len(ALPHABET)
FEATURE_CHUNK = 64  # clips per batched feature computation
TIME_MASKS, TIME_MASK_MAX = 2, 0.08  # masks per clip, each at most this share of its frames
FREQ_MASKS, FREQ_MASK_MAX = 2, 12  # masks per clip, each at most this many of the 80 mel bins
MEL_BINS = 80


def encode_text(text: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in normalise(text)]


def decode_ids(ids) -> str:
    """Greedy CTC: merge repeats, drop blanks."""
    out, previous = [], None
    for i in ids:
        i = int(i)
        if i != previous and i != BLANK:
            out.append(ALPHABET[i - 1])
        previous = i
    return "".join(out).strip()


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def character_error_rate(hypotheses: list[str], references: list[str]) -> float:
    errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    return errors / max(sum(len(r) for r in references), 1)


# --- data: features once ---------------------------------------------------------------------------------------

def load_folder(folder: Path, extractor: BatchedFeatureExtractor, limit: int | None = None) -> dict:
    """Every clip of an audiofolder with a `text` (or `caption`) column: fp16 features, label ids, engine."""
    rows = read_metadata(folder)[:limit]
    features, labels, engines, texts = [], [], [], []
    for start in range(0, len(rows), FEATURE_CHUNK):
        chunk = rows[start : start + FEATURE_CHUNK]
        waves = []
        for row in chunk:
            wave, rate = sf.read(folder / row["file_name"], dtype="float32")
            waves.append(to_mono_16k(wave, rate))
        batch = extractor(waves, sampling_rate=16000)
        lengths = batch["attention_mask"].sum(-1)
        for k, row in enumerate(chunk):
            text = normalise(row.get("text") or row.get("caption") or "")
            ids = encode_text(text)
            if not ids or int(lengths[k]) < len(ids):  # CTC needs a frame per character at least
                continue
            features.append(batch["input_features"][k, : int(lengths[k])].to(torch.float16).clone())
            labels.append(torch.tensor(ids, dtype=torch.int16))
            engines.append(row.get("engine", "?"))
            texts.append(text)
    return {"features": features, "labels": labels, "engines": engines, "texts": texts}


def load_corpus(speech: Path, cache: Path, log: Log, limit: int | None = None) -> dict[str, dict]:
    """{"train", "test", "test_engine"} → features (read from `cache` if it was made from the same files)."""
    parts = [p for p in ("train", "test", "test_engine") if (speech / p / "metadata.jsonl").exists()]
    key = {p: os.path.getmtime(speech / p / "metadata.jsonl") for p in parts} | {"limit": limit}
    if cache.exists():
        stored = torch.load(cache, weights_only=False)
        if stored.get("key") == key:
            log(f"features from {cache}: " + ", ".join(f"{p} {len(stored['parts'][p]['labels'])}" for p in stored["parts"]))
            return stored["parts"]
    extractor = BatchedFeatureExtractor(SeamlessM4TFeatureExtractor())
    corpus = {}
    for part in parts:
        start = time.perf_counter()
        corpus[part] = load_folder(speech / part, extractor, limit if part == "train" else None)
        n = len(corpus[part]["labels"])
        log(f"features of {part}: {n} clips in {time.perf_counter() - start:.1f} s ({n / max(time.perf_counter() - start, 1e-9):.0f} clips/s)")
    if "train" not in corpus or not corpus["train"]["labels"]:
        raise FileNotFoundError(f"{speech}/train: no clips with text; make the corpus with python -m world.sentences --out {speech}")
    tmp = cache.with_suffix(".tmp")
    torch.save({"key": key, "parts": corpus}, tmp)
    os.replace(tmp, cache)
    return corpus


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator, shortest_first: bool = False) -> list[np.ndarray]:
    """Batches of similar length (less padding): shuffle, sort within pools of 50 batches, shuffle the batches.
    `shortest_first` (the first epoch: SortaGrad, as in Deep Speech 2): all batches from the shortest clips up,
    which gets CTC off its all-blank plateau sooner."""
    if shortest_first:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size) if len(chunk[i : i + batch_size]) == batch_size]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(part: dict, indices, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """Padded fp32 features (SpecAugment-masked when `rng` is given), mask, labels padded with -100."""
    feats = [part["features"][i] for i in indices]
    labels = [part["labels"][i] for i in indices]
    longest = max(len(f) for f in feats)
    x = torch.zeros(len(feats), longest, feats[0].shape[-1])
    mask = torch.zeros(len(feats), longest, dtype=torch.long)
    for k, f in enumerate(feats):
        x[k, : len(f)] = f.float()
        mask[k, : len(f)] = 1
        if rng is not None:
            spec_augment(x[k, : len(f)], rng)
    y = torch.full((len(labels), max(len(l) for l in labels)), -100, dtype=torch.long)
    for k, l in enumerate(labels):
        y[k, : len(l)] = l.long()
    return {"input_features": x, "attention_mask": mask, "labels": y}


def spec_augment(features: torch.Tensor, rng: np.random.Generator) -> None:
    """In place: TIME_MASKS spans of frames and FREQ_MASKS bands of mel bins set to 0 (the per-bin mean)."""
    frames = features.shape[0]
    for _ in range(TIME_MASKS):
        width = int(rng.integers(0, max(int(TIME_MASK_MAX * frames), 1) + 1))
        start = int(rng.integers(0, max(frames - width, 0) + 1))
        features[start : start + width] = 0
    stacked = features.shape[1] // MEL_BINS  # w2v-BERT stacks 2 frames of 80 bins
    for _ in range(FREQ_MASKS):
        width = int(rng.integers(0, FREQ_MASK_MAX + 1))
        start = int(rng.integers(0, MEL_BINS - width + 1))
        for s in range(stacked):
            features[:, s * MEL_BINS + start : s * MEL_BINS + start + width] = 0


# --- the model ------------------------------------------------------------------------------------------------

def make_ctc_model(hidden: int = 96, layers: int = 3, seed: int = 0) -> Wav2Vec2BertForCTC:
    from world.train_audio import backbone_config

    torch.manual_seed(seed)
    config = backbone_config(hidden, layers)
    config.add_adapter = False
    config.vocab_size = len(ALPHABET) + 1
    config.pad_token_id = BLANK
    config.ctc_loss_reduction = "mean"
    config.ctc_zero_infinity = True
    return Wav2Vec2BertForCTC(config)


@torch.no_grad()
def transcribe_part(model: Wav2Vec2BertForCTC, part: dict, batch_size: int = 64) -> list[str]:
    model.eval()
    order = np.argsort([len(f) for f in part["features"]])
    texts: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate(part, idx)
        logits = model(input_features=batch["input_features"], attention_mask=batch["attention_mask"]).logits
        for k, i in enumerate(idx):
            texts[int(i)] = decode_ids(logits[k, : int(batch["attention_mask"][k].sum())].argmax(-1))
    model.train()
    return [texts[i] for i in range(len(order))]


def evaluate_cer(model: Wav2Vec2BertForCTC, corpus: dict[str, dict]) -> dict:
    """CER per held-out part and per engine in it (greedy decoding)."""
    result = {}
    for name in ("test", "test_engine"):
        part = corpus.get(name)
        if not part or not part["labels"]:
            continue
        hyps = transcribe_part(model, part)
        result[name] = round(character_error_rate(hyps, part["texts"]), 4)
        for engine in sorted(set(part["engines"])):
            keep = [i for i, e in enumerate(part["engines"]) if e == engine]
            result[f"{name}/{engine}"] = round(character_error_rate([hyps[i] for i in keep], [part["texts"][i] for i in keep]), 4)
        result[f"{name}/example"] = {"said": part["texts"][0], "heard": hyps[0]}
    return result


def save_final(model: Wav2Vec2BertForCTC, out: Path) -> None:
    """final/: the backbone alone (what align.train --audio-model takes); ctc/: the model with its head."""
    model.wav2vec2_bert.save_pretrained(out / "final")
    SeamlessM4TFeatureExtractor().save_pretrained(out / "final")
    model.save_pretrained(out / "ctc")
    (out / "ctc" / "vocab.json").write_text(json.dumps({"blank": BLANK, "alphabet": ALPHABET}))


def main(argv: list[str] | None = None) -> dict:
    parser = stage_parser(__doc__, "speech", steps=100000, batch_size=16, world=False)
    parser.add_argument("--speech", default="data/world/speech", help="the corpus (python -m world.sentences)")
    parser.add_argument("--hidden", type=int, default=96, help="hidden size of the backbone")
    parser.add_argument("--layers", type=int, default=3, help="conformer layers of the backbone")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--eval-minutes", type=float, default=5.0, help="measure CER on the held-out sets this often")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training clips")
    parser.set_defaults(lr=3e-3)
    args = parser.parse_args(argv)
    use_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt")
    corpus = load_corpus(Path(args.speech), out / "features.pt", log, args.limit)
    train = corpus["train"]
    lengths = [len(f) for f in train["features"]]

    model = make_ctc_model(args.hidden, args.layers, args.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    budget = Budget(args.steps, args.minutes)
    rng = np.random.default_rng(args.seed)
    epoch, position, history = 0, 0, []
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        budget.step, epoch, position, history = state["step"], state["epoch"], state["position"], state["history"]
        budget.start -= state["seconds"]  # the time already spent counts against --minutes
        rng.bit_generator.state = state["rng"]
        log(f"resumed at step {budget.step} ({state['seconds'] / 60:.1f} min done)")
    log(f"backbone hidden {args.hidden}, {args.layers} layers: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
        f"{len(lengths)} training clips")

    def save_checkpoint() -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": budget.step, "epoch": epoch,
                    "position": position, "history": history, "seconds": budget_seconds(), "rng": rng.bit_generator.state}, tmp)
        os.replace(tmp, checkpoint)

    def budget_seconds() -> float:
        return time.perf_counter() - budget.start

    batches = length_batches(lengths, args.batch_size, np.random.default_rng([args.seed, epoch]), shortest_first=epoch == 0)
    last_save = last_eval = time.perf_counter()
    samples, losses, clock = 0, [], time.perf_counter()
    while budget.next():
        if position >= len(batches):
            epoch, position = epoch + 1, 0
            batches = length_batches(lengths, args.batch_size, np.random.default_rng([args.seed, epoch]))
        batch = collate(train, batches[position], rng)
        position += 1
        budget.set_lr(optimizer, args.lr)
        loss = model(**batch).loss
        update(optimizer, loss)
        losses.append(loss.item())
        samples += len(batches[position - 1])
        if budget.step % 25 == 0:
            rate = samples / (time.perf_counter() - clock)
            log(f"step {budget.step} epoch {epoch} loss {np.mean(losses):.3f} lr {optimizer.param_groups[0]['lr']:.2e} "
                f"{rate:.0f} samples/s ({budget_seconds() / 60:.1f} min)")
            history.append({"step": budget.step, "loss": round(float(np.mean(losses)), 4), "samples_per_second": round(rate, 1),
                            "minutes": round(budget_seconds() / 60, 2)})
            samples, losses, clock = 0, [], time.perf_counter()
        if time.perf_counter() - last_eval > args.eval_minutes * 60:
            cer = evaluate_cer(model, corpus)
            log(f"step {budget.step}: CER " + json.dumps(cer))
            history.append({"step": budget.step, "cer": cer})
            last_eval = time.perf_counter()
        if time.perf_counter() - last_save > args.checkpoint_minutes * 60:
            save_checkpoint()
            last_save = time.perf_counter()
    save_checkpoint()
    cer = evaluate_cer(model, corpus)
    save_final(model, out)
    train_rates = [h["samples_per_second"] for h in history if "samples_per_second" in h]
    metrics = {"steps": budget.step, "epochs": epoch + position / max(len(batches), 1), "minutes": round(budget_seconds() / 60, 2),
               "hidden": args.hidden, "layers": args.layers, "clips": len(lengths),
               "samples_per_second": round(float(np.mean(train_rates)), 1) if train_rates else None,
               "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None), "cer": cer, "history": history}
    write_json(out / "metrics.json", metrics)
    log(f"done: {budget.step} steps, CER {json.dumps(cer)}; saved {out / 'final'}")
    return metrics


if __name__ == "__main__":
    main()
