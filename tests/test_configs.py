import argparse

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


def test_flag_help_is_the_comment_after_the_field():
    import dataclasses

    from rnnkit.settings import field_comments

    @dataclasses.dataclass
    class Base:
        width: int = 3  # columns of the grid
        rate: float = 0.5  # 50% of the time
        plain: int = 1

    @dataclasses.dataclass
    class Child(Base):
        rate: float = 0.25  # a quarter of the time

    assert field_comments(Child) == {"width": "columns of the grid", "rate": "a quarter of the time"}
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, Base, "grid")
    text = " ".join(parser.format_help().split())
    assert "columns of the grid (default: 3)" in text and "50% of the time (default: 0.5)" in text
    assert "--plain INT (default: 1)" in text
    # the real configs: every field's flag that has a comment shows it
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, TrainConfig, "train")
    assert "stop after this many epochs without validation" in " ".join(parser.format_help().split())
