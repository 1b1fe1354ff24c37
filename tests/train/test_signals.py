"""SIGTERM and SIGINT stop training at the next safe point, save a checkpoint and exit with
128 + the signal's number (143, 130): in real ``rnnkit train lm`` subprocesses, and in process
for what needs exact timing (a second signal arriving inside a checkpoint write)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.data import embedded_corpus
from rnnkit.tasks.lm.predictor import LMPredictor
from rnnkit.train import checkpoint as ckpt
from rnnkit.train import read_state, resolve_checkpoint
from rnnkit.train.metrics_log import read_metrics
from rnnkit.train.trainer import stop_on_signals
from tests.train.test_kill import DEADLINE, _env
from tests.train.test_kill import _command as kill_command
from tests.train.test_trainer import corpus, make  # noqa: F401  (corpus: a fixture)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix",
                                reason="POSIX signals")

ARGS = ["--epochs", "3", "--bptt", "10", "--batch-size", "16", "--hidden-size", "16", "--embed-size", "8",
        "--num-layers", "2", "--dropout", "0.1", "--checkpoint-every", "7", "--log-every", "2", "--seed", "0",
        "--device", "cpu", "--no-progress", "--sample-length", "0"]


def _command(data: Path, run: Path, resume: bool = False) -> list[str]:
    return kill_command(data, run, resume, ARGS)


def _weights(run: Path) -> dict:
    return load_file(str(resolve_checkpoint(run) / "model.safetensors"))


def _rows(run: Path, kind: str) -> list[dict]:
    try:
        return read_metrics(run, kind)
    except (OSError, KeyError):  # not there yet
        return []


def _start_and_wait(data: Path, run: Path, kind: str) -> subprocess.Popen:
    """Start a run and return once metrics.csv has its first ``kind`` row ("step" or "eval")."""
    proc = subprocess.Popen(_command(data, run), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    start = time.monotonic()
    while not _rows(run, kind):
        assert proc.poll() is None, f"the run ended before its first {kind} row: {proc.communicate()}"
        assert time.monotonic() - start < DEADLINE, "training made no progress"
        time.sleep(0.005)
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A data file and the final weights and step of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("signals")
    data = folder / "tiny.txt"
    data.write_text(embedded_corpus()[:8000], encoding="utf-8")
    run = folder / "reference"
    done = subprocess.run(_command(data, run), env=_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    return data, _weights(run), read_state(run)["step"]


def test_sigterm_saves_the_step_exits_143_and_resumes_to_the_same_weights(reference, tmp_path):
    data, weights, final_step = reference
    run = tmp_path / "run"
    proc = _start_and_wait(data, run, "step")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in err, err
    stopped = int(re.search(r"SIGTERM: training stopped at step (\d+)", out).group(1))
    assert f"interrupted at step {stopped}:" in out  # the task's own last line
    assert 2 <= stopped < final_step
    assert read_state(run)["step"] == stopped  # last is the step it stopped at, and it loads
    assert LMPredictor.load(run, checkpoint="last", device="cpu").meta["task"] == "lm"
    assert max(int(r["step"]) for r in _rows(run, "step")) <= stopped

    done = subprocess.run(_command(data, run, resume=True), env=_env(), capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert read_state(run)["step"] == final_step
    resumed = _weights(run)
    assert resumed.keys() == weights.keys()
    for name in weights:
        assert torch.equal(resumed[name], weights[name]), name
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_two_quick_sigints_exit_130_without_a_traceback_and_keep_the_checkpoints(reference, tmp_path):
    data, _, final_step = reference
    run = tmp_path / "run"
    proc = _start_and_wait(data, run, "eval")  # after the first validation: a best to keep
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    stopped = int(re.search(r"SIGINT: training stopped at step (\d+)", out).group(1))
    assert stopped < final_step
    assert read_state(run)["step"] == stopped
    LMPredictor.load(run, checkpoint="last", device="cpu")  # checksums verified
    LMPredictor.load(run, checkpoint="best", device="cpu")
    best_step = read_state(run / "checkpoints" / "best")["step"]
    assert best_step in {int(r["step"]) for r in _rows(run, "eval")}  # best is a validated checkpoint
    assert not list((run / "checkpoints").glob(".tmp-*")) and not list((run / "checkpoints").glob(".old-*"))


# ------------------------------------------------------------------------------ in process
def _send(signum: int) -> None:
    """Send ``signum`` to this process, but only while the Trainer's handler is in place (the
    default action of SIGTERM would end the test run)."""
    assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler), "no handler installed"
    os.kill(os.getpid(), signum)


def test_a_second_signal_inside_the_checkpoint_write_is_ignored(corpus, tmp_path, monkeypatch):  # noqa: F811
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    trainer = make(corpus, tmp_path)
    original = trainer.task.train_step

    def step(model, batch, state):
        if trainer.step == 3:  # inside the 4th step: it still completes
            _send(signal.SIGTERM)
        return original(model, batch, state)

    real_save_file, written = ckpt.save_file, []

    def save_file(tensors, filename):  # a Ctrl-C after state.safetensors, before state.json and the rest
        real_save_file(tensors, filename)
        _send(signal.SIGINT)
        written.append(filename)

    trainer.task.train_step = step
    monkeypatch.setattr(ckpt, "save_file", save_file)
    summary = trainer.fit()
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM" and summary["step"] == 4
    assert len(written) == 1  # one checkpoint, and the signal did not cut it short:
    saved = read_state(tmp_path)  # state.json, checksums (verified here), the rename and last followed
    assert saved["step"] == 4 and saved["batch_index"] == 4
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert {s: signal.getsignal(s) for s in before} == before  # the previous handlers are back


def test_a_signal_during_validation_stops_after_the_epochs_checkpoints(corpus, tmp_path):  # noqa: F811
    trainer = make(corpus, tmp_path, epochs=3)
    original = trainer.task.evaluate

    def evaluate(model, split):
        _send(signal.SIGINT)
        return original(model, split)

    trainer.task.evaluate = evaluate
    summary = trainer.fit()
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT" and summary["epoch"] == 1
    assert summary["valid"] is not None
    last, best = read_state(tmp_path), read_state(tmp_path / "checkpoints" / "best")
    assert last["epoch"] == 1 and last["batch_index"] == 0 and best["step"] == last["step"] == summary["step"]


def test_handlers_only_in_the_main_thread_and_restored(corpus, tmp_path):  # noqa: F811
    def custom(signum, frame):
        """A handler of the test's own: fit must put it back as it was."""

    previous = signal.signal(signal.SIGTERM, custom)
    try:
        with stop_on_signals(lambda name: None) as installed:
            assert installed and signal.getsignal(signal.SIGTERM) is not custom
        assert signal.getsignal(signal.SIGTERM) is custom
        ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job: left alone
        try:
            with stop_on_signals(lambda name: None):
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        finally:
            signal.signal(signal.SIGINT, ignored)
    finally:
        signal.signal(signal.SIGTERM, previous)

    results, before = [], signal.getsignal(signal.SIGINT)
    trainer = make(corpus, tmp_path, max_steps=2)
    thread = threading.Thread(target=lambda: results.append(trainer.fit()))  # no handlers: not the main thread
    thread.start()
    thread.join()
    assert results and results[0]["status"] == "max_steps"
    assert signal.getsignal(signal.SIGINT) is before
