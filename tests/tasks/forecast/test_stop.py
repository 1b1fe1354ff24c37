"""A signal that stops one member of a forecasting ensemble stops the run: exit 143 (SIGTERM)
or 130, no forecast.json; and a forecast run folder is locked while it trains."""

import pytest

from rnnkit.cli import main
from rnnkit.train import run_lock
from rnnkit.train.trainer import Trainer
from tests.tasks.forecast.test_run_folder import write_csv

ARGS = ["--horizon", "6", "--epochs", "2", "--hidden-size", "4", "--baselines", "naive", "--samples", "0",
        "--ensemble", "2", "--no-progress"]


@pytest.mark.parametrize("signal,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stopped_member_stops_the_run(tmp_path, capsys, monkeypatch, signal, code):
    csv = write_csv(tmp_path / "s.csv")
    fit = Trainer.fit

    def stopped_fit(self):
        summary = fit(self)
        return {**summary, "status": "interrupted", "signal": signal}

    monkeypatch.setattr(Trainer, "fit", stopped_fit)
    run = tmp_path / "run"
    assert main(["train", "forecast", "--csv", str(csv), "--run", str(run), *ARGS]) == code
    out = capsys.readouterr().out
    assert f"interrupted by {signal} while training {run / 'members' / '0'}" in out
    assert not (run / "forecast.json").exists() and not (run / "members" / "1").exists()
    assert (run / "members" / "0" / "checkpoints" / "last").is_file()


def test_a_forecast_run_folder_is_locked_while_it_trains(tmp_path, monkeypatch):
    csv = write_csv(tmp_path / "s.csv")
    run = tmp_path / "run"
    fit, seen = Trainer.fit, []

    def watched_fit(self):
        seen.append(run.resolve() in run_lock._held)
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", watched_fit)
    assert main(["train", "forecast", "--csv", str(csv), "--run", str(run), *ARGS]) == 0
    assert seen == [True, True]  # held while each member trained
    assert (run / "forecast.json").is_file() and run.resolve() not in run_lock._held  # and given back
