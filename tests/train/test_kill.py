"""``kill -9`` of a real ``rnnkit train lm`` at random moments: every kill leaves a last
checkpoint that loads, and ``--resume`` runs end with the weights of an uninterrupted run.

The kill moments are random (seeded) relative to the checkpoint cycle: after each launch the
test waits until a new checkpoint is named by ``last`` (so every round makes progress), then
kills after a random delay of up to a few checkpoint intervals: inside a step, inside a
checkpoint write, between the folder rename and the pointer update, at an epoch's end.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.data import embedded_corpus
from rnnkit.tasks.lm.predictor import LMPredictor
from rnnkit.train import read_state, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--epochs", "2", "--bptt", "10", "--batch-size", "16", "--hidden-size", "16", "--embed-size", "8",
        "--num-layers", "2", "--dropout", "0.1", "--checkpoint-every", "3", "--log-every", "5", "--seed", "0",
        "--device", "cpu", "--no-progress", "--sample-length", "0"]
DEADLINE = 120  # seconds any one launch may take before the test calls it a hang


def _env() -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               RNNKIT_FUSED="0")  # the unfused path: no kernel build in the subprocess
    return env


def _command(data: Path, run: Path, resume: bool, args: list[str] = ARGS) -> list[str]:
    return [sys.executable, "-m", "rnnkit", "train", "lm", "--data", str(data), "--run", str(run), *args] + (
        ["--resume"] if resume else [])


def _pointer(run: Path):
    try:
        return (run / "checkpoints" / "last").read_text()
    except OSError:
        return None


def _final_weights(run: Path) -> dict:
    return load_file(str(resolve_checkpoint(run) / "model.safetensors"))


def _check_loadable(run: Path) -> int:
    """The last checkpoint passes its checksums and loads into a model; returns its step."""
    lm = LMPredictor.load(run, checkpoint="last", device="cpu")
    vocab, meta = lm.vocab, lm.meta
    assert meta["task"] == "lm" and len(vocab) > 0
    return read_state(run)["step"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run's data file and final weights."""
    folder = tmp_path_factory.mktemp("kill")
    data = folder / "tiny.txt"
    data.write_text(embedded_corpus()[:8000], encoding="utf-8")
    run = folder / "reference"
    done = subprocess.run(_command(data, run, False), env=_env(), capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    return data, _final_weights(run), read_state(run)["step"]


def kill_and_resume(reference, run: Path, kills: int, seed: int) -> list[int]:
    data, weights, final_step = reference
    rng = random.Random(seed)
    killed_at = []
    for _ in range(kills):
        before = _pointer(run)
        proc = subprocess.Popen(_command(data, run, before is not None), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start = time.monotonic()
        while _pointer(run) == before and proc.poll() is None:  # wait for one new checkpoint
            assert time.monotonic() - start < DEADLINE, "training made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:  # finished before the kill
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        proc.stderr.close()
        killed_at.append(_check_loadable(run))
    done = subprocess.run(_command(data, run, True), env=_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert read_state(run)["step"] == final_step
    resumed = _final_weights(run)
    assert resumed.keys() == weights.keys()
    for name in weights:
        assert torch.equal(resumed[name], weights[name]), name
    assert not list((run / "checkpoints").glob(".tmp-*"))  # the last save cleared the leftovers
    print(f"{run.name}: killed {len(killed_at)} times, last checkpoint at steps {killed_at}; "
          f"resumed to step {final_step} with identical weights")
    return killed_at


def test_kill_9_at_random_moments_resumes_to_the_same_weights(reference, tmp_path):
    killed_at = kill_and_resume(reference, tmp_path / "run", kills=3, seed=0)
    assert killed_at and killed_at == sorted(killed_at)  # fewer kills only on a much faster machine


@pytest.mark.slow
def test_kill_9_many_times(reference, tmp_path):
    for seed in range(3):
        killed_at = kill_and_resume(reference, tmp_path / f"run{seed}", kills=12, seed=100 + seed)
        assert len(killed_at) >= 3
