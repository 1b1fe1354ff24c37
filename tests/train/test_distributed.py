"""Data-parallel training under torchrun: the sharding helpers, each task's split of a global
batch (its loss is the mean over the units it counts, so the scaled per-rank losses add up to
the global mean), and real 2-process gloo runs on the CPU whose weights must equal a
single-process run with the same global batch and seed; checkpoints resume 2 -> 1 and 1 -> 2."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnkit.cli import main
from rnnkit.data import load_splits
from rnnkit.data.vocab import TokenVocab
from rnnkit.tasks.forecast.series import make_windows
from rnnkit.tasks.forecast.task import ForecastModelConfig, ForecastTask
from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig, LMTask, encode_splits
from rnnkit.tasks.speech.audio import Normalizer, Recording
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig, SpeechTask, split_recordings
from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig, TaggingTask, Vocabularies
from rnnkit.tasks.translate.pairs import WordTokenizer
from rnnkit.tasks.translate.task import TranslationDataConfig, TranslationModelConfig, TranslationTask
from rnnkit.train import TrainConfig, Trainer, distributed
from rnnkit.train.checkpoint import read_state
from tests.audio_fixtures import tone_folder
from tests.conftest import assert_close
from tests.tasks.tag.test_task import context_corpus, write_treebank
from tests.tasks.translate.test_task import PAIRS

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("n", [1, 2, 5, 7, 12])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_slices_cover_the_batch_in_order_and_differ_by_at_most_one(n, world):
    slices = [distributed.shard_slice(n, r, world) for r in range(world)]
    items = [i for s in slices for i in range(n)[s]]
    assert items == list(range(n))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_slice_example_and_bad_rank():
    assert distributed.shard_slice(10, 1, 4) == slice(3, 6)
    assert distributed.shard_slice(1, 1, 2) == slice(1, 1)  # nothing left for rank 1
    with pytest.raises(ValueError, match="rank must be in"):
        distributed.shard_slice(4, 2, 2)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_split_and_join_a_carried_state_round_trip(world):
    h, c = torch.randn(2, 7, 3), torch.randn(2, 7, 3)  # (L, B, H)
    parts = [distributed.split_state((h, c), r, world) for r in range(world)]
    assert [p[0].shape[1] for p in parts] == [len(range(7)[distributed.shard_slice(7, r, world)]) for r in range(world)]
    joined = distributed.join_states(parts)
    assert torch.equal(joined[0], h) and torch.equal(joined[1], c)
    assert torch.equal(distributed.join_states([distributed.split_state(h, r, world) for r in range(world)]), h)
    assert distributed.split_state(None, 0, world) is None and distributed.join_states([None] * world) is None


def test_one_process_has_no_process_group_and_no_wrapper(tmp_path):
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.all_reduce_sum([2.0, 3]) == [2.0, 3.0] and distributed.broadcast("x") == "x"
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model and distributed.unwrap(model) is model
    task = _lm_task()
    trainer = Trainer(task.build_model(), task, TrainConfig(progress=False, device="cpu"), tmp_path)
    assert trainer.train_model is trainer.model and not torch.distributed.is_initialized()


# ------------------------------------------------------------- each task's split of a batch
def _lm_task(batch_size=5):
    texts, _ = load_splits(None)
    ids, vocab = encode_splits({"train": texts["train"][:2000], "valid": texts["valid"][:300]}, "char")
    return LMTask(ids, vocab, LMDataConfig(bptt=7, batch_size=batch_size),
                  LMModelConfig(embed_size=6, hidden_size=8, num_layers=2))


def _tagging_task(batch_size=5, crf=True):
    train = context_corpus(23, seed=1)
    cfg = TaggerModelConfig(word_embed=8, char_embed=4, char_hidden=4, hidden_size=6, num_layers=1, dropout=0.0,
                            crf=crf)
    return TaggingTask({"train": train, "valid": train}, Vocabularies.build(train),
                       TaggingDataConfig(batch_size=batch_size, word_dropout=0.0), cfg)


def _translation_task(batch_size=5):
    tok = WordTokenizer(lower=True)
    src, tgt = TokenVocab.build(tok.tokenize(s) for s, _ in PAIRS), TokenVocab.build(tok.tokenize(t) for _, t in PAIRS)
    cfg = TranslationModelConfig(embed_size=8, hidden_size=8, dropout=0.0, label_smoothing=0.1)
    return TranslationTask({"train": PAIRS, "valid": PAIRS}, tok, tok, src, tgt,
                           TranslationDataConfig(batch_size=batch_size), cfg)


def _forecast_task(batch_size=5):
    z = np.sin(np.arange(80) / 3.0)
    train = make_windows(z[:, None], z, 6, 2, 0, 60)
    valid = make_windows(z[:, None], z, 6, 2, 60, 80)
    return ForecastTask(train, valid, ForecastModelConfig(hidden_size=5, direct=True), batch_size, seed=0, meta={})


def _speech_task(batch_size=5):
    recordings = [Recording(f"{d}_{s}_{i}.wav", d, s, i) for s in ("ann", "bob") for d in range(10) for i in range(4)]
    features = np.random.default_rng(0).normal(size=(len(recordings), 6))
    cfg = SpeechDataConfig(test_indices="0", valid_indices="1", train_sequences=13, eval_sequences=4,
                           batch_size=batch_size)
    return SpeechTask(recordings, features, split_recordings(recordings, cfg), Normalizer.fit(features), cfg,
                      SpeechModelConfig(hidden_size=5, dropout=0.0))


TASKS = {"lm": _lm_task, "tagging": _tagging_task, "translation": _translation_task, "forecast": _forecast_task,
         "speech": _speech_task}


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_ranks_losses_weighted_by_their_units_are_the_global_mean(name, world):
    """The premise of the loss scaling: train_step's loss is the mean over the n_tokens units it
    reports, so sum_r n_r * loss_r / N (what the Trainer's scaled, DDP-averaged gradients
    follow) is the single-process loss of the global batch, gradients included."""
    torch.manual_seed(0)
    task = TASKS[name]()
    model = task.build_model()
    batch = task.train_batches(0)[0]
    state = None
    if name == "lm":  # a carried state, cut the same way as the stream columns
        _, state = model(batch[0].to(torch.long), None)
        state = tuple(s.detach() for s in state)
    params = list(model.parameters())
    loss, n, _ = task.train_step(model, batch, state)
    full = torch.autograd.grad(loss, params, allow_unused=True)
    parts = [(task.shard(batch, r, world), distributed.split_state(state, r, world)) for r in range(world)]
    results = [task.train_step(model, p, s) for p, s in parts if p is not None]
    total = sum(r[1] for r in results)
    assert total == n
    mean = sum(r[0] * (r[1] / total) for r in results)
    assert float(mean.detach()) == pytest.approx(float(loss.detach()), rel=1e-6)
    summed = torch.autograd.grad(mean, params, allow_unused=True)
    for a, b in zip(full, summed):
        if a is not None:
            assert_close(b, a, torch.float32)


def test_short_last_batch_leaves_a_rank_idle_and_small_batches_are_refused():
    task = _tagging_task(batch_size=5)
    short = [b for b in task.train_batches(0) if len(b) < 5][0]  # 23 sentences: 4 batches of 5 and one of 3
    assert len(short) == 3 and task.shard(short, 3, 4) is None and task.shard(short, 2, 4) == short[2:]
    for make in TASKS.values():
        small = make(batch_size=3)
        with pytest.raises(ValueError, match="global batch, split over the 4 processes"):
            small.shard(small.train_batches(0)[0], 0, 4)


def test_translation_shard_cuts_its_padding():
    task = _translation_task(batch_size=8)
    src, src_len, tgt_in, tgt_out = task.train_batches(0)[0]
    for r in range(3):
        s, sl, ti, to = task.shard((src, src_len, tgt_in, tgt_out), r, 3)
        assert s.shape[0] == int(sl.max()) and (to[-1] != TokenVocab.pad).any()
        cols = distributed.shard_slice(8, r, 3)
        assert torch.equal(s, src[: s.shape[0], cols]) and torch.equal(to, tgt_out[: to.shape[0], cols])
        assert (src[s.shape[0]:, cols] == TokenVocab.pad).all() and (tgt_out[to.shape[0]:, cols] == TokenVocab.pad).all()


# ------------------------------------------------------------------ real runs under torchrun
def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> str:
    """``torchrun --standalone --nproc_per_node N -m rnnkit.cli -- ARGS`` (gloo on the CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "rnnkit.cli", "--", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _weights(run: Path, step: int) -> dict:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    for name in a:
        assert_close(b[name], a[name], torch.float32, name)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _train_losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(r["loss"]) for r in csv.DictReader(handle) if r["kind"] == "step"]


def _rewind(run: Path, copy: Path, step: int) -> Path:
    """A copy of ``run`` whose last checkpoint is ``step`` (as if it had stopped there)."""
    shutil.copytree(run, copy)
    for folder in (copy / "checkpoints").glob("step_*"):
        if folder.name != f"step_{step:08d}":
            shutil.rmtree(folder)
    (copy / "checkpoints" / "last").write_text(f"step_{step:08d}\n")
    return copy


LM_ARGS = ["--bptt", "10", "--batch-size", "5", "--embed-size", "8", "--hidden-size", "12", "--num-layers", "2",
           "--dropout", "0", "--lr", "0.01", "--max-steps", "6", "--checkpoint-every", "3", "--log-every", "1",
           "--split", "0.8,0.1,0.1", "--no-progress", "--sample-length", "0", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    """The same tiny LM (5 streams, split 3 + 2) trained 6 steps in 1 and in 2 processes."""
    root = tmp_path_factory.mktemp("ddp_lm")
    texts, _ = load_splits(None)
    (root / "corpus.txt").write_text(texts["train"][:3000], encoding="utf-8")
    args = ["train", "lm", "--data", str(root / "corpus.txt")] + LM_ARGS
    assert main(args + ["--run", str(root / "one")]) == 0
    _torchrun(args + ["--run", str(root / "two")], root)
    return root, args


def test_two_processes_train_the_same_weights_as_one(lm_runs):
    root, _ = lm_runs
    one, two = root / "one", root / "two"
    for step in (3, 6):
        _assert_same_weights(_weights(one, step), _weights(two, step))
    assert _train_losses(two) == pytest.approx(_train_losses(one), rel=1e-5)  # reduced over the ranks
    saved_one, saved_two = read_state(one), read_state(two)
    assert saved_two["world_size"] == 2 and len(saved_two["rng_ranks"]) == 1
    for a, b in zip(saved_one["carry"], saved_two["carry"]):  # the global (L, B, H) state, both ranks'
        assert b.shape == (2, 5, 12)
        assert_close(b, a, torch.float32, "carry")
    assert sorted(p.name for p in (two / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000006"]


def test_resume_two_processes_checkpoint_in_one(lm_runs, tmp_path):
    root, args = lm_runs
    run = _rewind(root / "two", tmp_path / "two_then_one", 3)
    assert main(args + ["--run", str(run), "--resume"]) == 0
    _assert_same_weights(_weights(root / "one", 6), _weights(run, 6))


def test_resume_one_process_checkpoint_in_two(lm_runs, tmp_path):
    root, args = lm_runs
    run = _rewind(root / "one", tmp_path / "one_then_two", 3)
    out = _torchrun(args + ["--run", str(run), "--resume"], tmp_path)
    assert "resuming from" in out and "(step 3)" in out
    _assert_same_weights(_weights(root / "one", 6), _weights(run, 6))
    assert "rng_ranks" in read_state(run)


def test_tagger_with_crf_and_a_short_last_batch_trains_the_same_in_two_processes(tmp_path):
    """31 sentences in batches of 6: the last batch has one sentence, so rank 1 sits it out
    (weight 0); the CRF's weights are used outside forward (``model.loss``)."""
    data = write_treebank(tmp_path / "toy")
    args = ["train", "tag", "--data", str(data), "--limit", "31", "--batch-size", "6", "--epochs", "2",
            "--hidden-size", "8", "--num-layers", "1", "--word-embed", "8", "--char-hidden", "4", "--char-embed", "4",
            "--crf", "--dropout", "0", "--word-dropout", "0", "--lr", "0.01", "--log-every", "1", "--no-progress",
            "--device", "cpu", "--early-stop", "0"]
    assert main(args + ["--run", str(tmp_path / "one")]) == 0
    _torchrun(args + ["--run", str(tmp_path / "two")], tmp_path)
    _assert_same_weights(_weights(tmp_path / "one", 12), _weights(tmp_path / "two", 12))
    assert _train_losses(tmp_path / "two") == pytest.approx(_train_losses(tmp_path / "one"), rel=1e-5)
    assert (tmp_path / "two" / "checkpoints" / "best").is_dir()


def test_classifier_with_adversarial_training_and_its_language_model_trains_the_same_in_two_processes(tmp_path):
    """The classifier's objective under DDP: the adversarial gradient is taken inside forward
    (autograd.grad with respect to the features) and the auxiliary language model's loss is a
    mean over texts, so two ranks of 4 texts give one process's batch of 8."""
    from tests.tasks.classify.test_predictor import write_folder

    data = write_folder(tmp_path / "sentiment")
    args = ["train", "classify", "--data", str(data), "--limit", "40", "--batch-size", "8", "--epochs", "2",
            "--embed-size", "8", "--hidden-size", "6", "--adversarial", "0.1", "--lm-weight", "0.5",
            "--lm-vocab", "20", "--dropout", "0", "--embed-dropout", "0", "--word-dropout", "0", "--lr", "0.01",
            "--log-every", "1", "--no-progress", "--device", "cpu", "--early-stop", "0"]
    assert main(args + ["--run", str(tmp_path / "one")]) == 0
    _torchrun(args + ["--run", str(tmp_path / "two")], tmp_path)
    _assert_same_weights(_weights(tmp_path / "one", 10), _weights(tmp_path / "two", 10))
    assert _train_losses(tmp_path / "two") == pytest.approx(_train_losses(tmp_path / "one"), rel=1e-5)


@pytest.mark.slow
def test_translation_and_forecast_commands_under_torchrun_match_one_process(tmp_path):
    """`rnnkit train translate` and `rnnkit train forecast` (an ensemble of 2, refit, baselines)
    under torchrun: rank 0 writes the reports, and they equal the single-process ones."""
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 3), encoding="utf-8")
    translate = ["train", "translate", "--data", str(pairs), "--valid", "2", "--test", "2", "--min-count", "1",
                 "--hidden-size", "8", "--embed-size", "8", "--epochs", "2", "--batch-size", "5", "--dropout", "0",
                 "--no-progress", "--eval-bleu", "2", "--device", "cpu"]
    t = np.arange(96)
    values = 100 + t + 10 * np.sin(2 * np.pi * t / 12)
    series = tmp_path / "series.csv"
    series.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{v:.3f}\n"
                                                 for i, v in enumerate(values)))
    forecast = ["train", "forecast", "--csv", str(series), "--horizon", "6", "--epochs", "3", "--hidden-size", "6",
                "--samples", "10", "--ensemble", "2", "--refit", "--baselines", "naive", "--batch-size", "7",
                "--device", "cpu"]
    for name, args in (("translate", translate), ("forecast", forecast)):
        assert main(args + ["--run", str(tmp_path / f"{name}1")]) == 0
        out = _torchrun(args + ["--run", str(tmp_path / f"{name}2")], tmp_path)
        assert "2 processes (gloo)" in out
    last = read_state(tmp_path / "translate1")["step"]
    _assert_same_weights(_weights(tmp_path / "translate1", last), _weights(tmp_path / "translate2", last))
    one, two = (json.loads((tmp_path / f"forecast{k}" / "forecast.json").read_text()) for k in (1, 2))
    assert two["members"] == ["members/0-refit", "members/1-refit"] and two["best_epochs"] == one["best_epochs"]
    assert two["test"]["rnnkit"] == pytest.approx(one["test"]["rnnkit"], rel=1e-4)
    assert (tmp_path / "forecast2" / "forecast.png").is_file()


@pytest.mark.slow
def test_speech_in_two_processes_trains_the_same_weights_as_one(tmp_path):
    """Spoken numbers of different lengths, 13 per epoch in batches of 4 (the last has one):
    rank 0 computes the feature cache, rank 1 reads it."""
    pytest.importorskip("librosa")
    folder = tone_folder(tmp_path / "wavs", repetitions=3)
    args = ["train", "speech", "--data", str(folder), "--test-indices", "0", "--valid-indices", "1",
            "--hidden-size", "6", "--epochs", "2", "--train-sequences", "13", "--eval-sequences", "6",
            "--batch-size", "4", "--dropout", "0", "--lr", "0.01", "--log-every", "1", "--no-progress",
            "--device", "cpu"]
    assert main(args + ["--run", str(tmp_path / "one")]) == 0
    _torchrun(args + ["--run", str(tmp_path / "two")], tmp_path)
    _assert_same_weights(_weights(tmp_path / "one", 8), _weights(tmp_path / "two", 8))
    assert _train_losses(tmp_path / "two") == pytest.approx(_train_losses(tmp_path / "one"), rel=1e-5)
