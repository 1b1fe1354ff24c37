"""Trainer behaviour on a small real slice of the embedded corpus."""

import csv
import math
import re
import sys
from datetime import datetime, timedelta, timezone

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data import load_splits
from rnnkit.errors import CheckpointError, TrainingDiverged
from rnnkit.tasks.lm.task import (
    LanguageModel,
    LMDataConfig,
    LMModelConfig,
    LMTask,
    detach_state,
    encode_splits,
    window_loss,
)
from rnnkit.train import TrainConfig, Trainer, read_state, resolve_checkpoint, seed_everything
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.metrics_log import MetricsLog, read_metrics


@pytest.fixture(scope="module")
def corpus():
    texts, source = load_splits(None)
    small = {"train": texts["train"][:6000], "valid": texts["valid"][:1500], "test": texts["test"][:1500]}
    return encode_splits(small, "char") + (source,)


def make(corpus, run_dir, **train):
    ids, vocab, source = corpus
    seed_everything(0)
    task = LMTask(ids, vocab, LMDataConfig(bptt=20, batch_size=4, eval_batch_size=2),
                  LMModelConfig(embed_size=16, hidden_size=24, num_layers=2, dropout=0.2), source)
    cfg = TrainConfig(**{"epochs": 2, "lr": 3e-3, "progress": False, "log_every": 5, **train})
    return Trainer(task.build_model(), task, cfg, run_dir)


def test_tbptt_with_carried_state_equals_full_bptt_when_window_covers_sequence():
    torch.manual_seed(0)
    model = LanguageModel(11, LMModelConfig(embed_size=5, hidden_size=7, num_layers=2)).double()
    seq = torch.randint(0, 11, (13, 3))
    inputs, targets = seq[:-1], seq[1:]
    # full BPTT over the whole sequence
    loss_full, _ = window_loss(model, inputs, targets, None)
    g_full = torch.autograd.grad(loss_full, list(model.parameters()))
    # windows that cover the sequence in one piece carry nothing: identical gradients
    loss_win, _ = window_loss(model, inputs[:12], targets[:12], None)
    g_win = torch.autograd.grad(loss_win, list(model.parameters()))
    for a, b in zip(g_full, g_win):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # shorter windows with the state carried (and detached) see the same forward values
    state, losses = None, []
    for start in range(0, 12, 4):
        loss, state = window_loss(model, inputs[start:start + 4], targets[start:start + 4], state)
        state = detach_state(state)
        losses.append(loss.item() * 4)
    assert math.isclose(sum(losses) / 12, loss_full.item(), rel_tol=1e-12)


def test_resume_continues_with_the_same_losses(corpus, tmp_path):
    full = make(corpus, tmp_path / "full")
    full.fit()
    reference = [h["loss"] for h in full.history]

    part = make(corpus, tmp_path / "part", max_steps=17)  # stop mid-epoch, state carried
    part.fit()
    resumed = make(corpus, tmp_path / "part")
    resumed.resume()
    assert resumed.step == 17 and resumed.state is not None
    resumed.fit()
    losses = [h["loss"] for h in part.history] + [h["loss"] for h in resumed.history]
    assert len(losses) == len(reference)
    assert losses == pytest.approx(reference, rel=1e-6, abs=1e-7)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_killed_checkpoint_write_leaves_the_previous_one_loadable(corpus, tmp_path, monkeypatch):
    trainer = make(corpus, tmp_path, max_steps=5)
    trainer.fit()
    before = resolve_checkpoint(tmp_path)
    real_save_file = ckpt.save_file

    def dying_save_file(tensors, filename):
        real_save_file(tensors, filename)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt, "save_file", dying_save_file)
    trainer.step += 1
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    monkeypatch.undo()
    assert resolve_checkpoint(tmp_path) == before
    assert read_state(tmp_path)["step"] == 5
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    fresh = make(corpus, tmp_path)
    fresh.resume()
    assert fresh.step == 5


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(corpus, tmp_path):
    trainer = make(corpus, tmp_path, checkpoint_every=3, max_steps=8)
    original = trainer.task.train_step

    def poisoned(model, batch, state):
        loss, n, state = original(model, batch, state)
        return (loss * float("nan") if trainer.step == 5 else loss), n, state

    trainer.task.train_step = poisoned
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 6 .* last good checkpoint is .*step_00000003"):
        trainer.fit()
    assert read_state(tmp_path)["step"] == 3


def test_incomplete_or_foreign_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        resolve_checkpoint(tmp_path)
    bad = tmp_path / "checkpoints" / "step_00000001"
    bad.mkdir(parents=True)
    (bad / "model.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "checkpoints" / "last").write_text("step_00000001\n")
    with pytest.raises(CheckpointError, match="incomplete checkpoint, missing state.safetensors, state.json"):
        resolve_checkpoint(tmp_path)


def test_ctrl_c_saves_a_checkpoint_and_returns_cleanly(corpus, tmp_path):
    trainer = make(corpus, tmp_path)
    original = trainer.task.train_step

    def interrupted(model, batch, state):
        if trainer.step == 4:
            raise KeyboardInterrupt
        return original(model, batch, state)

    trainer.task.train_step = interrupted
    summary = trainer.fit()
    assert summary["status"] == "interrupted" and summary["step"] == 4
    saved = read_state(tmp_path)
    assert saved["step"] == 4 and saved["batch_index"] == 4


def test_step_schedule_and_early_stopping(corpus, tmp_path):
    trainer = make(corpus, tmp_path, optimizer="sgd", lr=1.0, schedule="step", decay_start=1, lr_decay=0.5,
                   epochs=3, early_stop=1)
    lrs = []
    original = trainer.task.evaluate

    def spy(model, split):
        lrs.append(trainer.lr)
        metrics = original(model, split)
        return {**metrics, "loss": 10.0 - len(lrs) if len(lrs) == 1 else 99.0}  # worse after epoch 1

    trainer.task.evaluate = spy
    summary = trainer.fit()
    assert lrs == [1.0, 0.5]  # Zaremba-style: constant for decay_start epochs, then halved each epoch
    assert summary["status"] == "early_stopped" and summary["epoch"] == 2


def test_non_finite_values_reaching_a_layer_stop_training_like_a_nan_loss(corpus, tmp_path):
    trainer = make(corpus, tmp_path, checkpoint_every=2, max_steps=6)
    original = trainer.task.train_step

    def poisoned(model, batch, state):
        if trainer.step == 3:
            with torch.no_grad():
                model.embedding.weight[batch[0][0, 0]] = float("inf")  # what a blown-up update leaves
        return original(model, batch, state)

    trainer.task.train_step = poisoned
    with pytest.raises(TrainingDiverged, match=r"a recurrent layer received non-finite values \(LSTM: input "
                                               r"contains \+inf at \(t=0, b=0, d=0\).*\) at step 4 .*step_00000002"):
        trainer.fit()


def test_progress_bar_redirected_to_a_file_writes_a_few_lines_per_epoch(corpus, tmp_path, monkeypatch):
    trainer = make(corpus, tmp_path / "run", progress=True)
    steps_per_epoch = len(trainer.task.train_batches(0))
    assert steps_per_epoch > 20
    with open(tmp_path / "stderr.txt", "w", encoding="utf-8") as log:
        monkeypatch.setattr(sys, "stderr", log)  # what `2> file` gives: not a terminal
        trainer.fit()
        monkeypatch.undo()
    text = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    updates = [part for part in re.split(r"[\r\n]", text) if "epoch " in part]
    assert 2 <= len(updates) <= 2 * 3, updates  # opened and closed (and one a minute), per epoch of 2


def test_metrics_rows_carry_the_wall_clock_time_in_a_last_column(corpus, tmp_path):
    start = datetime.now(timezone.utc)
    make(corpus, tmp_path, epochs=1).fit()
    end = datetime.now(timezone.utc)
    with open(tmp_path / "metrics.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == ["kind", "epoch", "step", "loss", "lr", "tokens_per_s", "split", "metric", "value", "time"]
    rows = read_metrics(tmp_path)
    assert {r["kind"] for r in rows} == {"step", "eval"}
    times = [datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in rows]
    assert all(r["time"].endswith("Z") for r in rows)
    assert all(start - timedelta(seconds=1) <= t <= end + timedelta(seconds=1) for t in times)
    assert times == sorted(times)


def test_a_metrics_file_from_before_the_time_column_keeps_its_columns(tmp_path):
    old = "kind,epoch,step,loss,lr,tokens_per_s,split,metric,value\r\nstep,1,5,2.000000,0.002,100.0,,,\r\n"
    (tmp_path / "metrics.csv").write_text(old, encoding="utf-8", newline="")
    log = MetricsLog(tmp_path, tensorboard=False)
    log.step(1, 10, 1.5, 0.002, 120.0)
    log.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == ["5", "10"] and all(None not in r and "time" not in r for r in rows)


def test_max_steps_run_validates_logs_and_keeps_best(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RNNKIT_FUSED", "0")
    data = tmp_path / "corpus.txt"
    data.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 200)
    run = tmp_path / "run"
    rc = main(["train", "lm", "--data", str(data), "--run", str(run), "--epochs", "2", "--bptt", "20",
               "--batch-size", "4", "--hidden-size", "16", "--embed-size", "8", "--num-layers", "1",
               "--no-progress", "--sample-length", "0", "--log-every", "1", "--max-steps", "5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "max_steps at step 5" in out and "checkpoints/best" in out
    evals = read_metrics(run, "eval")
    assert evals and {r["step"] for r in evals} == {"5"} and {r["split"] for r in evals} == {"valid"}
    best = read_state(run / "checkpoints" / "best")
    assert best["step"] == read_state(run)["step"] == 5
    assert best["best"] == pytest.approx(float(next(r["value"] for r in evals if r["metric"] == "loss")), abs=1e-6)
