"""The Trainer's DiagnosticsCallback: what it records equals what trace_dynamics measures on
the same inputs, and it warns when gradients explode or vanish."""

import csv
import warnings

import numpy as np
import pytest
import torch

from rnnkit import init
from rnnkit.lab.long_range import LongRangeModel, LongRangeSettings, LongRangeTask
from rnnkit.models.probes import trace_dynamics
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.callbacks import Callback
from rnnkit.train.diagnostics import DiagnosticsCallback, GradientWarning


def _trainer(tmp_path, model, callbacks=(), T=12, **train):
    task = LongRangeTask("adding", T, LongRangeSettings(batch=8, eval_every=4, eval_size=16))
    cfg = TrainConfig(**{"epochs": 2, "lr": 1e-3, "progress": False, "device": "cpu", **train})
    return Trainer(model, task, cfg, tmp_path, callbacks=callbacks), task


class _Capture(Callback):
    """Keeps the batch of the first step, to replay it."""

    def __init__(self):
        self.batches = []

    def on_step_start(self, trainer, batch):
        self.batches.append(batch)


def test_records_match_trace_dynamics_and_files_are_written(tmp_path):
    torch.manual_seed(0)
    model = LongRangeModel("lstm", "adding", 6).double()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    capture = _Capture()
    diag = DiagnosticsCallback(every=3)
    trainer, task = _trainer(tmp_path, model, [capture, diag])
    trainer.fit()
    assert [r["step"] for r in diag.records] == [1, 3, 6]  # the first step, then every 3rd of 8
    # replay step 1 with the initial weights: the probe must agree exactly
    replay = LongRangeModel("lstm", "adding", 6).double()
    replay.load_state_dict(initial)
    g = torch.Generator().manual_seed(task.cfg.seed * 1_000_003 + 17 + capture.batches[0])
    x, _ = task.batch(task.cfg.batch, g)
    expected = trace_dynamics(replay.rnn, x.double(), loss="last").directions[0]
    assert diag.records[0]["probe_grad_ratio"] == pytest.approx(expected.gradient_ratio(), rel=1e-9)
    with open(tmp_path / "diagnostics_steps.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["step"] == "1"]
    np.testing.assert_allclose([float(r["h_norm"]) for r in rows], expected.h_norm, rtol=1e-9)
    # the training loss reads only the last step: its dL/dh_t is zero before the last step's
    # direct term reaches back, and equals the probe's shape up to the loss's scale
    real = np.array([float(r["grad_h_norm"]) for r in rows])
    assert (real > 0).all() and real.shape == (12,)
    assert diag.records[0]["spectral_radius"] > 0 and diag.records[0]["grad_norm"] > 0
    assert (tmp_path / "diagnostics.png").stat().st_size > 10_000  # the figure of the run


def test_warns_on_exploding_and_vanishing_gradients(tmp_path):
    torch.manual_seed(0)
    exploding = LongRangeModel("irnn", "adding", 32).double()
    init.hidden_normal_(exploding.rnn, 6.0)  # ReLU RNN, sqrt(6/2) per step: explodes
    diag = DiagnosticsCallback(every=100, explode=1e3)
    trainer, _ = _trainer(tmp_path / "a", exploding, [diag], T=40, max_steps=1, clip=1.0)
    with pytest.warns(GradientWarning, match="exploding gradients"):
        trainer.fit()

    vanishing = LongRangeModel("tanh", "adding", 32).double()
    init.hidden_normal_(vanishing.rnn, 0.1)
    diag = DiagnosticsCallback(every=100, vanish=1e-6)
    trainer, _ = _trainer(tmp_path / "b", vanishing, [diag], T=40, max_steps=1)
    with pytest.warns(GradientWarning, match="vanishing gradients"):
        trainer.fit()


def test_warns_once_per_layer_but_keeps_every_occurrence(tmp_path):
    model = LongRangeModel("tanh", "adding", 16).double()
    init.hidden_normal_(model.rnn, 0.1)
    diag = DiagnosticsCallback(every=1)
    trainer, _ = _trainer(tmp_path, model, [diag], T=40, max_steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    shown = [w for w in caught if issubclass(w.category, GradientWarning)]
    assert len(shown) == 1 and len(diag.warnings) == 4


def test_trainconfig_diagnostics_attaches_the_callback(tmp_path):
    model = LongRangeModel("gru", "adding", 8)
    trainer, _ = _trainer(tmp_path, model, diagnostics=2, max_steps=3)
    assert any(isinstance(c, DiagnosticsCallback) for c in trainer.callbacks)
    trainer.fit()
    assert (tmp_path / "diagnostics.csv").read_text().count("\n") == 1 + 2  # header, steps 1 and 2
    with pytest.raises(ValueError, match="diagnostics"):
        TrainConfig(diagnostics=-1).validate()
    with pytest.raises(ValueError, match="every"):
        DiagnosticsCallback(every=0)
