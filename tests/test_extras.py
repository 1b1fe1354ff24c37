"""Optional dependencies are checked when a command starts, not after its work: each command
that needs an extra stops at once with one line naming the module and the extra.  The import
is made to fail by putting None into ``sys.modules``."""

import sys

import pytest

from rnnkit.cli import main
from rnnkit.extras import require


def test_require_names_the_missing_modules_and_the_extra(monkeypatch):
    require("json", "none", "anything")  # present: nothing happens
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(ImportError) as caught:
        require(["json", "sacrebleu", "sentencepiece"], "translate", "rnnkit train translate", "a hint")
    assert str(caught.value) == ("rnnkit train translate needs sacrebleu and sentencepiece: "
                                 "pip install 'rnnkit[translate]' (a hint)")


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_train_translate_without_sacrebleu_stops_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Go.\tVe.\nHi.\tHola.\n" * 20, encoding="utf-8")
    err = one_line_error(capsys, ["train", "translate", "--data", str(pairs), "--run", str(tmp_path / "run")])
    assert err == "rnnkit: error: rnnkit train translate needs sacrebleu: pip install 'rnnkit[translate]'\n"
    assert not (tmp_path / "run").exists()


def test_train_tag_without_conllu_stops_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "conllu", None)
    err = one_line_error(capsys, ["train", "tag", "--data", str(tmp_path), "--run", str(tmp_path / "run")])
    assert err == "rnnkit: error: rnnkit train tag needs conllu: pip install 'rnnkit[tag]'\n"


def test_lab_without_matplotlib_stops_before_measuring(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = one_line_error(capsys, ["lab", "activations", "--out", str(tmp_path / "lab")])
    assert err == "rnnkit: error: rnnkit lab needs matplotlib: pip install 'rnnkit[lab]'\n"
    assert not (tmp_path / "lab").exists()


def test_train_forecast_without_statsmodels_stops_unless_its_baselines_are_left_out(tmp_path, monkeypatch, capsys):
    from rnnkit.tasks.forecast.run import ForecastDataConfig, require_extras

    monkeypatch.setitem(sys.modules, "statsmodels", None)
    csv = tmp_path / "s.csv"
    csv.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{i}\n" for i in range(48)))
    err = one_line_error(capsys, ["train", "forecast", "--csv", str(csv), "--run", str(tmp_path / "run")])
    assert err == ("rnnkit: error: rnnkit train forecast with the ARIMA and ETS baselines needs statsmodels: "
                   "pip install 'rnnkit[forecast]' (the baselines can be left out: --baselines naive,seasonal_naive)\n")
    assert not (tmp_path / "run").exists()
    require_extras(ForecastDataConfig(csv=str(csv), baselines="naive,seasonal_naive"))  # no statsmodels needed
    with pytest.raises(ImportError, match="with --dataset co2 and --deseasonalize needs statsmodels"):
        require_extras(ForecastDataConfig(dataset="co2", baselines="", deseasonalize=True))


def test_forecast_plot_without_matplotlib_stops_before_forecasting(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = one_line_error(capsys, ["forecast", str(tmp_path / "no-run"), "--plot", str(tmp_path)])
    assert err == "rnnkit: error: rnnkit forecast --plot needs matplotlib: pip install 'rnnkit[forecast]'\n"
