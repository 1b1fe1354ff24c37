"""The long-range benchmarks: the data is what the papers describe, the baselines are the
memoryless predictors' losses, and a short run through the Trainer learns."""

import math

import pytest
import torch

from rnnkit.lab import long_range as lr


def test_adding_batch_follows_le_et_al():
    g = torch.Generator().manual_seed(0)
    x, y = lr.adding_batch(40, 500, g)
    assert x.shape == (40, 500, 2) and y.shape == (500,)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (markers.sum(0) == 2).all()
    assert (markers[:20].sum(0) == 1).all() and (markers[20:].sum(0) == 1).all()  # one per half
    torch.testing.assert_close(y, (values * markers).sum(0))


def test_adding_baseline_is_the_variance_of_the_sum():
    g = torch.Generator().manual_seed(1)
    _, y = lr.adding_batch(20, 200_000, g)
    assert lr.baseline("adding", 20) == pytest.approx(1 / 6)
    assert float(((y - 1) ** 2).mean()) == pytest.approx(1 / 6, abs=0.003)


def test_copy_batch_follows_arjovsky_et_al():
    g = torch.Generator().manual_seed(0)
    delay = 7
    x, y = lr.copy_batch(delay, 64, g)
    L = delay + 20
    assert x.shape == (L, 64, 10) and y.shape == (L, 64)
    tokens = x.argmax(-1)
    assert ((tokens[:10] >= 1) & (tokens[:10] <= 8)).all()
    assert (tokens[10:10 + delay - 1] == 0).all() and (tokens[10 + delay - 1] == 9).all()
    assert (tokens[10 + delay:] == 0).all()
    assert (y[:-10] == 0).all() and torch.equal(y[-10:], tokens[:10])
    # the memoryless predictor: blank for T + 10 steps, then uniform over the 8 symbols
    logits = torch.full((L, 64, 9), -1e9)
    logits[:-10, :, 0] = 0
    logits[-10:, :, 1:] = 0
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), y.reshape(-1))
    assert float(ce) == pytest.approx(lr.baseline("copy", delay), rel=1e-6)
    assert lr.baseline("copy", delay) == pytest.approx(10 * math.log(8) / L)


def test_bad_settings_are_refused():
    g = torch.Generator()
    with pytest.raises(ValueError, match="T >= 2"):
        lr.adding_batch(1, 4, g)
    with pytest.raises(ValueError, match="delay >= 1"):
        lr.copy_batch(0, 4, g)
    with pytest.raises(ValueError, match="model must be one of"):
        lr.LongRangeModel("transformer", "adding", 4)
    with pytest.raises(ValueError, match="task must be one of"):
        lr.LongRangeTask("sorting", 10, lr.LongRangeSettings())


def test_models_are_initialized_as_the_papers_say():
    irnn = lr.LongRangeModel("irnn", "adding", 8).rnn
    torch.testing.assert_close(irnn.weight_hh_l0.detach(), torch.eye(8))
    assert irnn.nonlinearity == "relu" and irnn.weight_ih_l0.std() < 0.01
    lstm = lr.LongRangeModel("lstm", "copy", 8).rnn
    torch.testing.assert_close((lstm.bias_ih_l0 + lstm.bias_hh_l0)[8:16].detach(), torch.ones(8))


def test_short_training_run_learns_the_adding_problem(tmp_path):
    torch.manual_seed(0)
    cfg = lr.LongRangeSettings("adding", (10,), hidden=24, batch=32, steps=600, eval_every=200,
                               eval_size=500, lr=1e-2)
    row = lr.train_one("adding", "gru", 10, cfg, tmp_path / "run")
    assert row["test_loss"] < 0.3 * lr.baseline("adding", 10)
    assert [step for step, _ in row["curve"]][:1] == [200]
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "diagnostics.csv").exists()
    assert row["probe_grad_ratio_start"] is not None


@pytest.mark.slow
def test_quick_adding_table_gated_cells_solve_t50_tanh_does_not(tmp_path):
    """The quick `rnnkit lab adding` setting at T = 50 (about a minute per model)."""
    cfg = lr.LongRangeSettings("adding", (50,), models=("tanh", "gru"), steps=2000)
    result = lr.run("adding", cfg, tmp_path)
    assert result.facts[("gru", 50)]["solved"]
    assert not result.facts[("tanh", 50)]["solved"]
    assert result.facts[("tanh", 50)]["test_loss"] > 0.5 * lr.baseline("adding", 50)
