"""Quick versions of the lab's experiments 1-5, asserting the lecture's qualitative facts
with margins (fixed seeds), and that every figure is written."""

import math

import pytest

from rnnkit.lab import dynamics
from rnnkit.lab.common import LabSettings

pytest.importorskip("matplotlib")

QUICK = LabSettings(hidden=100, steps=101, seeds=5, batch=8)


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path


def test_activations_explode_vanish_and_keep_scale(tmp_path):
    res = dynamics.activations(QUICK, tmp_path)
    facts = res.facts
    # over 100 steps: s = 3 grows > 10x, s = 1.5 shrinks below 0.1x, s = 2 stays within 10x
    assert facts["growth_3"] > 10 * 1000  # margin: measured ~1e8
    assert facts["growth_1.5"] < 0.1 / 1000  # measured ~1e-7
    assert 0.1 < facts["growth_2"] < 10
    _png(tmp_path / "activations.png")
    assert (tmp_path / "activations.png") in res.figures
    assert len(res.tables["activations"]) == 3 * 2 * QUICK.seeds * QUICK.steps


def test_gradients_explode_and_vanish(tmp_path):
    facts = dynamics.gradients(QUICK, tmp_path).facts
    assert facts["ratio_3"] > 1e3
    assert facts["ratio_1.5"] < 1e-3
    # s = 2 sits between them by orders of magnitude (see the experiment's note on spread)
    assert 1e-2 < facts["ratio_2"] < 1e2
    _png(tmp_path / "gradients.png")


def test_bounded_activations_saturate_and_small_scales_vanish(tmp_path):
    facts = dynamics.saturation(QUICK, tmp_path).facts
    for nonlinearity in ("tanh", "sigmoid"):
        fractions = [facts[f"{nonlinearity}_{s:g}"]["saturated"] for s in dynamics.SATURATION_SCALES]
        assert fractions == sorted(fractions) and fractions[-1] > 0.5  # saturation grows with scale
        for s in dynamics.SATURATION_SCALES:  # bounded: ||h_t|| <= sqrt(n), whatever the scale
            assert facts[f"{nonlinearity}_{s:g}"]["max_h"] <= math.sqrt(QUICK.hidden) + 1e-9
    for s in (0.25, 1.0):
        assert facts[f"tanh_{s:g}"]["ratio"] < 1e-6
    for s in (0.25, 1.0, 4.0, 16.0):
        assert facts[f"sigmoid_{s:g}"]["ratio"] < 1e-6
    # beyond the edge of chaos a tanh RNN's gradients grow although most units saturate
    assert facts["tanh_256"]["ratio"] > 1 and facts["tanh_256"]["saturated"] > 0.5
    _png(tmp_path / "saturation.png")


def test_lstm_cell_state_carries_the_gradient_when_forget_gate_near_one(tmp_path):
    facts = dynamics.lstm(QUICK, tmp_path).facts
    assert facts["lstm_0"]["ratio_c"] < 1e-6  # f = 1/2: halves every step
    assert facts["lstm_5"]["ratio_c"] > 0.1  # f ~ 0.99: survives 100 steps
    assert facts["lstm_0"]["ratio_c"] < facts["lstm_1"]["ratio_c"] < facts["lstm_3"]["ratio_c"]
    for bias in dynamics.FORGET_BIASES:  # zero-mean pre-activations: f_t ~ sigmoid(b_f)
        assert facts[f"lstm_{bias:g}"]["forget"] == pytest.approx(1 / (1 + math.exp(-bias)), abs=0.05)
    assert facts["tanh RNN, s = 1"] < 1e-6
    _png(tmp_path / "lstm.png")


def test_growth_rate_follows_spectral_radius(tmp_path):
    res = dynamics.spectral(LabSettings(hidden=100, steps=120, seeds=6, batch=4), tmp_path)
    assert res.facts["identity_mean_abs_error"] < 0.01  # linear: exactly log rho, asymptotically
    assert res.facts["relu_mean_abs_error"] < 0.05  # ReLU: mean field log(rho / sqrt 2)
    _png(tmp_path / "spectral.png")
