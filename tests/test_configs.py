import argparse
import re
from typing import Optional

import pytest

from rnnkit.settings import ConfigError, add_dataclass_flags, build, load_config_file
from rnnkit.tasks.lm.task import LMModelConfig
from rnnkit.train.config import TrainConfig


def parse(argv):
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, LMModelConfig, "model")
    add_dataclass_flags(parser, TrainConfig, "train")
    return parser.parse_args(argv)


@pytest.mark.parametrize("suffix,text", [
    (".toml", "[model]\nhidden_size = 64\ntie_weights = true\n[train]\nlr = 1\n"),
    (".yaml", "model:\n  hidden_size: 64\n  tie_weights: true\ntrain:\n  lr: 1\n"),
])
def test_defaults_then_file_then_flags(tmp_path, suffix, text):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(text)
    values = load_config_file(str(path))
    model = build(LMModelConfig, values, parse(["--hidden-size", "32"]), "model")
    train = build(TrainConfig, values, parse(["--no-progress"]), "train")
    assert model.hidden_size == 32  # the flag wins over the file
    assert model.tie_weights is True and model.num_layers == LMModelConfig().num_layers
    assert train.lr == 1.0 and isinstance(train.lr, float) and train.progress is False


def test_config_errors_name_the_setting(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[train]\nepochs = 'ten'\n")
    with pytest.raises(ConfigError, match="train.epochs must be int, got 'ten'"):
        build(TrainConfig, load_config_file(str(path)), parse([]), "train", str(path))
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not a valid config file"):
        load_config_file(str(path))
    with pytest.raises(ConfigError, match="must end in .toml, .yaml or .yml"):
        load_config_file(str(tmp_path / "x.json")) if (tmp_path / "x.json").write_text("{}") else None


def flag_help_text(*classes) -> str:
    """The help of a parser with the flags of ``classes``, whitespace collapsed."""
    parser = argparse.ArgumentParser()
    for cls in classes:
        add_dataclass_flags(parser, cls, cls.__name__)
    return " ".join(parser.format_help().split())


def test_flag_help_is_the_setting_help():
    import dataclasses

    from rnnkit.settings import field_help, setting

    @dataclasses.dataclass
    class Base:
        width: int = setting(3, "columns of the grid")
        rate: float = setting(0.5, "50% of the time")
        plain: int = 1
        name: Optional[str] = setting(None, "a name (default: the file's)")
        label: Optional[str] = setting(None, "a label")

    @dataclasses.dataclass
    class Child(Base):
        rate: float = setting(0.25, "a quarter of the time")
        width: int = 4  # a new default only: the base's help stays

    assert field_help(Child, "rate") == "a quarter of the time" and field_help(Child, "plain") == ""
    text = flag_help_text(Base)
    assert "columns of the grid (default: 3)" in text and "50% of the time (default: 0.5)" in text
    assert "--plain INT (default: 1)" in text
    # a help that states its default gets no second one; a None default shows nothing
    assert "--name STR a name (default: the file's) --label STR a label" in text
    assert "(default: None)" not in text
    text = flag_help_text(Child)
    assert "a quarter of the time (default: 0.25)" in text and "columns of the grid (default: 4)" in text
    # the real configs
    assert "stop after this many epochs without validation" in flag_help_text(TrainConfig)


CONFIGS = {
    "lm": ("rnnkit.tasks.lm.task", "LMDataConfig", "LMModelConfig", "rnnkit.train.config", "TrainConfig"),
    "tag": ("rnnkit.tasks.tag.task", "TaggingDataConfig", "TaggerModelConfig", "", "TagTrainConfig"),
    "translate": ("rnnkit.tasks.translate.task", "TranslationDataConfig", "TranslationModelConfig", "",
                  "TranslateTrainConfig"),
    "speech": ("rnnkit.tasks.speech.task", "SpeechDataConfig", "SpeechModelConfig", "", "SpeechTrainConfig"),
    "forecast": ("rnnkit.tasks.forecast.task", "ForecastModelConfig", "ForecastTrainConfig", "rnnkit.tasks.forecast.run",
                 "ForecastDataConfig"),
}


def task_configs(task: str) -> list:
    import importlib

    module, first, second, other, third = CONFIGS[task]
    classes = [getattr(importlib.import_module(module), first), getattr(importlib.import_module(module), second)]
    return classes + [getattr(importlib.import_module(other or module), third)]


@pytest.mark.parametrize("task", list(CONFIGS))
def test_every_config_field_has_a_help(task):
    import dataclasses

    from rnnkit.settings import field_help

    for cls in task_configs(task):
        missing = [f.name for f in dataclasses.fields(cls) if not field_help(cls, f.name)]
        assert not missing, f"{cls.__name__}: no help for {missing}"


@pytest.mark.parametrize("task", list(CONFIGS))
def test_train_help_states_each_default_once(task, capsys):
    from rnnkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", task, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text)  # no "(default: X) (default: Y)"
    assert "stop after this many epochs without validation" in text
    if task == "forecast":
        assert "value column to forecast (default: the only one) --" in text
        assert "--epochs INT passes over the training data (default: 200)" in text


def test_task_train_defaults_live_beside_the_config():
    import dataclasses

    from rnnkit.settings import field_help
    from rnnkit.tasks.forecast.task import ForecastTrainConfig
    from rnnkit.tasks.speech.task import SpeechTrainConfig
    from rnnkit.tasks.tag.task import TagTrainConfig
    from rnnkit.tasks.translate.task import TranslateTrainConfig

    expected = {
        SpeechTrainConfig: {"epochs": 30, "early_stop": 8, "lr": 3e-3, "log_every": 20, "progress": False},
        TagTrainConfig: {"epochs": 30, "early_stop": 8, "log_every": 50},
        TranslateTrainConfig: {"lr": 1e-3, "log_every": 50},
        ForecastTrainConfig: {"epochs": 200, "early_stop": 20, "lr": 3e-3, "log_every": 50, "progress": False},
    }
    base = dataclasses.asdict(TrainConfig())
    for cls, changed in expected.items():
        values = dataclasses.asdict(cls())
        assert list(values) == list(base), cls.__name__  # same keys, same order
        assert values == {**base, **changed}, cls.__name__
        assert field_help(cls, "epochs") == field_help(TrainConfig, "epochs") != ""
        assert isinstance(cls().validate(), cls)
    assert SpeechTrainConfig().epochs == 30 and ForecastTrainConfig().epochs == 200
