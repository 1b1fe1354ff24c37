"""Every numeric setting declares the values it allows, and flags and config files alike refuse
the others with one line naming the setting, the range and the value given.

The grid is derived from the configs of the task registry, so a new int or float field without
a declared range fails ``test_every_numeric_field_declares_a_lower_bound``."""

import argparse
import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest

from rnnkit.settings import (
    ConfigError,
    Range,
    bounded,
    build,
    check_settings,
    field_range,
    load_config_file,
    setting,
)
from rnnkit.tasks.base import all_tasks
from rnnkit.train.config import TrainConfig

SECTIONS = ("data", "model", "train")
TASKS = {task.NAME: task for task in all_tasks()}


def kind_of(cls, field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def config_fields(kinds: tuple) -> list:
    """(task, section, class, field, kind) of every field of ``kinds`` of every task's configs."""
    rows = []
    for name, task in TASKS.items():
        for cls, section in zip(task.CONFIGS, SECTIONS):
            for field in dataclasses.fields(cls):
                kind = kind_of(cls, field)
                if kind in kinds:
                    rows.append((name, section, cls, field.name, kind))
    return rows


NUMERIC = config_fields((int, float))
CHOICE = [row for row in config_fields((str,)) if field_range(row[2], row[3]) is not None]


def outside(kind: type, allowed: Range) -> list:
    """Values just outside ``allowed`` (and, for floats, the non-finite ones)."""
    step = 1 if kind is int else 0.5
    bad = []
    if allowed.ge is not None:
        bad.append(kind(allowed.ge - step))
    if allowed.gt is not None:
        bad.append(kind(allowed.gt))
    if allowed.le is not None:
        bad.append(kind(allowed.le + step))
    if allowed.lt is not None:
        bad.append(kind(allowed.lt))
    if kind is float:
        bad += [math.nan, math.inf, -math.inf]
    return bad


def grid() -> list:
    cases = []
    for task, section, cls, name, kind in NUMERIC:
        for value in outside(kind, field_range(cls, name) or Range()):
            cases.append(pytest.param(task, section, cls, name, value, id=f"{task}-{section}.{name}={value}"))
    for task, section, cls, name, _ in CHOICE:
        cases.append(pytest.param(task, section, cls, name, "nonesuch", id=f"{task}-{section}.{name}=nonesuch"))
    return cases


def toml_literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def flag_text(value) -> str:
    return str(value) if not isinstance(value, float) or math.isfinite(value) else toml_literal(value)


@pytest.fixture(scope="module")
def cli_parser():
    from rnnkit.cli import build_parser

    return build_parser()[0]


def error_line(err: str) -> str:
    """The one error line of an argparse failure (after its usage lines)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    return errors[0]


def test_every_numeric_field_declares_a_lower_bound():
    missing = [f"{cls.__name__}.{name}" for _, _, cls, name, _ in NUMERIC
               if field_range(cls, name) is None or field_range(cls, name).low is None]
    assert not missing, f"int/float settings without a declared minimum: {missing}"
    assert len({(cls, name) for _, _, cls, name, _ in NUMERIC}) >= 100  # the grid is not empty by accident


def test_fixed_string_settings_declare_their_choices():
    declared = {(cls.__name__, name) for _, _, cls, name, _ in CHOICE}
    for _, _, cls, name, _ in config_fields((str,)):
        if name in ("cell", "optimizer", "schedule", "level", "device", "attention", "tokenizer", "head", "dataset") \
                or (name == "column" and cls.__name__.startswith("Tagging")):
            assert (cls.__name__, name) in declared, f"{cls.__name__}.{name} has no choices"


@pytest.mark.parametrize("task", list(TASKS))
def test_defaults_are_inside_their_ranges(task):
    for cls in TASKS[task].CONFIGS:
        assert check_settings(cls()) is not None
        for field in dataclasses.fields(cls):
            allowed, default = field_range(cls, field.name), getattr(cls(), field.name)
            if allowed is not None and default is not None:
                assert allowed.problem(default) is None, f"{cls.__name__}.{field.name} = {default!r}"


@pytest.mark.parametrize("task,section,cls,name,value", grid())
def test_out_of_range_flag_and_file_value_are_one_line_errors(task, section, cls, name, value, cli_parser,
                                                              tmp_path, capsys):
    problem = field_range(cls, name).problem(value) if field_range(cls, name) else Range().problem(value)
    assert problem and problem.endswith(f"got {value!r}")
    flag = "--" + name.replace("_", "-")
    # the flag: argparse's one error line names the flag, the range and the value
    with pytest.raises(SystemExit) as exc:
        cli_parser.parse_args(["train", task, f"{flag}={flag_text(value)}"])
    assert exc.value.code == 2
    line = error_line(capsys.readouterr().err)
    assert line == f"rnnkit train {task}: error: argument {flag}: {problem}"
    # the same value in a TOML file: a ConfigError naming section.field
    path = tmp_path / "cfg.toml"
    path.write_text(f"[{section}]\n{name} = {toml_literal(value)}\n")
    with pytest.raises(ConfigError) as exc:
        build(cls, load_config_file(str(path)), argparse.Namespace(), section, str(path))
    assert str(exc.value) == f"{path}: {section}.{name} {problem}"
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("task,section,cls,name,kind", [pytest.param(*row, id=f"{row[0]}-{row[1]}.{row[3]}")
                                                        for row in NUMERIC])
def test_the_bounds_themselves_are_accepted(task, section, cls, name, kind, cli_parser):
    allowed = field_range(cls, name)
    edges = [kind(bound) for bound in (allowed.ge, allowed.le) if bound is not None]
    if allowed.gt is not None:
        edges.append(allowed.gt + 1 if kind is int else allowed.gt + 1e-6)
    if allowed.lt is not None:
        edges.append(allowed.lt - 1 if kind is int else allowed.lt - 1e-6)
    for value in edges:
        assert getattr(build(cls, {section: {name: value}}, argparse.Namespace(), section), name) == value
        flags = cli_parser.parse_args(["train", task, "--" + name.replace("_", "-"), repr(value)])
        assert getattr(flags, name) == value


def test_help_shows_the_ranges(capsys):
    from rnnkit.cli import main

    with pytest.raises(SystemExit):
        main(["train", "lm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--bptt INT steps per truncated-BPTT window (default: 100) (in [1, 1000000])" in text
    assert "--epochs INT passes over the training data (default: 10) (>= 1)" in text
    assert "--lr FLOAT learning rate (default: 0.002) (> 0)" in text
    assert "(default: 0.0) (in [0, 1))" in text  # dropout
    assert "(default: all) (in [3, 10000000])" in text  # max_vocab: a help that states its default
    assert "--init-range FLOAT uniform(-a, a) for every weight (Zaremba: 0.1) (> 0)" in text
    assert "--cell STR lstm | gru | rnn (default: lstm) --" in text  # choices the help lists: not twice


def test_help_lists_choices_the_help_does_not_name():
    @dataclasses.dataclass
    class Config:
        mode: str = setting("fast", "how to run", choices=("fast", "slow"))
        rate: float = setting(0.5, "rate", ge=0, le=1)

    parser = argparse.ArgumentParser()
    from rnnkit.settings import add_dataclass_flags

    add_dataclass_flags(parser, Config, "config")
    text = " ".join(parser.format_help().split())
    assert "how to run (default: fast) (one of fast, slow)" in text
    assert "rate (default: 0.5) (in [0, 1])" in text


def test_ranges_and_bounded():
    assert Range(ge=1).describe() == ">= 1" and Range(gt=0).describe() == "> 0"
    assert Range(ge=0, lt=1).describe() == "in [0, 1)" and Range(gt=0, le=1).describe() == "in (0, 1]"
    assert Range(choices=("a", "b")).describe() == "one of a, b"
    assert Range(ge=1).problem(0) == "must be >= 1, got 0" and Range(ge=1).problem(1) is None
    assert Range().problem(math.nan) == "must be a finite number, got nan" and Range().problem(1e300) is None
    with pytest.raises(TypeError):
        Range(ge=0, gt=0)
    with pytest.raises(TypeError):
        Range(ge=0, choices=("a",))
    top_k = bounded(int, ge=1)
    assert top_k("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 1, got 0$"):
        top_k("0")
    with pytest.raises(ValueError):
        top_k("three")  # argparse: "invalid int value: 'three'"
    assert top_k.__name__ == "int"
    top_p = bounded(float, gt=0, le=1)
    assert top_p("1") == 1.0
    for text in ("0", "1.5", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            top_p(text)


def test_config_file_bools_are_not_ints(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[train]\nepochs = true\n")
    with pytest.raises(ConfigError, match=r"train\.epochs must be int, got True"):
        build(TrainConfig, load_config_file(str(path)), argparse.Namespace(), "train", str(path))


def test_yaml_non_finite_floats_are_refused(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"train\.lr must be a finite number > 0, got nan"):
        build(TrainConfig, load_config_file(str(path)), argparse.Namespace(), "train", str(path))


def test_validate_relies_on_the_declared_ranges():
    assert isinstance(TrainConfig().validate(), TrainConfig)
    for values, message in [({"lr": 0.0}, "lr must be > 0, got 0.0"), ({"epochs": 0}, "epochs must be >= 1, got 0"),
                            ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, adam, adamw, got 'lbfgs'"),
                            ({"lr_decay": 1.5}, r"lr_decay must be in \(0, 1\], got 1.5"),
                            ({"clip": math.nan}, "clip must be a finite number >= 0, got nan")]:
        with pytest.raises(ConfigError, match=f"^{message}$"):
            TrainConfig(**values).validate()


EXPERIMENTS = sorted((Path(__file__).parents[1] / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_the_experiment_configs_are_inside_the_ranges(path):
    task = re.search(r"rnnkit train (\w+)", path.read_text()).group(1)
    values = load_config_file(str(path))
    for cls, section in zip(TASKS[task].CONFIGS, SECTIONS):
        build(cls, values, argparse.Namespace(), section, str(path))


# ------------------------------------------------------------------ through rnnkit.cli.main
def run_main(argv, capsys) -> tuple:
    from rnnkit.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "lm", "--log-every", "0"], "argument --log-every: must be >= 1, got 0"),
    (["train", "lm", "--init-range", "-1"], "argument --init-range: must be > 0, got -1.0"),
    (["train", "lm", "--bptt", "0"], "argument --bptt: must be in [1, 1000000], got 0"),
    (["train", "lm", "--max-vocab", "0"], "argument --max-vocab: must be in [3, 10000000], got 0"),
    (["train", "lm", "--max-vocab", "1"], "argument --max-vocab: must be in [3, 10000000], got 1"),
    (["train", "translate", "--max-vocab", "4"], "argument --max-vocab: must be in [5, 10000000], got 4"),
    (["train", "lm", "--checkpoint-every", "-1"], "argument --checkpoint-every: must be >= 0, got -1"),
    (["train", "lm", "--max-steps", "-1"], "argument --max-steps: must be >= 0, got -1"),
    (["train", "lm", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["train", "tag", "--batch-size", "0"], "argument --batch-size: must be in [1, 65536], got 0"),
    (["train", "lm", "--hidden-size", "0"], "argument --hidden-size: must be in [1, 65536], got 0"),
    (["train", "speech", "--hidden-size", "65537"], "argument --hidden-size: must be in [1, 65536], got 65537"),
    (["train", "lm", "--embed-size", "10000000000"],
     "argument --embed-size: must be in [1, 65536], got 10000000000"),
    (["train", "forecast", "--num-layers", "0"], "argument --num-layers: must be in [1, 100], got 0"),
    (["train", "lm", "--dropout", "1"], "argument --dropout: must be in [0, 1), got 1.0"),
    (["train", "translate", "--dropout=-0.1"], "argument --dropout: must be in [0, 1), got -0.1"),
    (["train", "lm", "--lr", "0"], "argument --lr: must be > 0, got 0.0"),
    (["train", "lm", "--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    (["train", "lm", "--clip", "-1"], "argument --clip: must be >= 0, got -1.0"),
    (["train", "forecast", "--horizon", "0"], "argument --horizon: must be in [1, 1000000], got 0"),
    (["train", "lm", "--cell", "lstn"], "argument --cell: must be one of lstm, gru, rnn, got 'lstn'"),
    (["train", "lm", "--sample-length", "-5"], "argument --sample-length: must be in [0, 1000000], got -5"),
    (["sample", "run", "--length", "-10"], "argument --length: must be in [0, 1000000], got -10"),
    (["sample", "run", "--top-k", "0"], "argument --top-k: must be >= 1, got 0"),
    (["sample", "run", "--top-p", "0"], "argument --top-p: must be in (0, 1], got 0.0"),
    (["sample", "run", "--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
    (["sample", "run", "--temperature", "0"], "argument --temperature: must be > 0, got 0.0"),
    (["sample", "run", "--temperature", "-1"], "argument --temperature: must be > 0, got -1.0"),
    (["sample", "run", "--seed", "-1"], "argument --seed: must be in [0, 4294967295], got -1"),
    (["translate", "hello", "--beam", "-3"], "argument --beam: must be in [0, 1000], got -3"),
    (["translate", "hello", "--n-best", "0"], "argument --n-best: must be in [1, 1000], got 0"),
    (["translate", "hello", "--top-k", "0"], "argument --top-k: must be >= 1, got 0"),
    (["translate", "hello", "--top-p", "1.01"], "argument --top-p: must be in (0, 1], got 1.01"),
    (["translate", "hello", "--temperature", "0"], "argument --temperature: must be > 0, got 0.0"),
    (["translate", "hello", "--length-penalty", "-1"], "argument --length-penalty: must be >= 0, got -1.0"),
    (["forecast", "run", "--horizon", "0"], "argument --horizon: must be in [1, 1000000], got 0"),
    (["forecast", "run", "--samples", "-1"], "argument --samples: must be in [0, 100000], got -1"),
    (["lab", "all", "--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    (["lab", "all", "--hidden", "-4"], "argument --hidden: must be in [1, 65536], got -4"),
    (["lab", "all", "--steps", "0"], "argument --steps: must be in [1, 1000000], got 0"),
    (["lab", "all", "--threads", "0"], "argument --threads: must be in [1, 1024], got 0"),
    (["lab", "all", "--lengths", "10", "0"], "argument --lengths: must be in [1, 1000000], got 0"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    code, err = run_main(argv, capsys)
    assert code == 2
    assert error_line(err).endswith(f": error: {message}")


@pytest.mark.parametrize("options,message", [
    (["--limit", "0"], "argument --limit: must be >= 1, got 0"),
    (["--beam", "-3"], "argument --beam: must be in [0, 1000], got -3"),
    (["--coverage", "-0.5"], "argument --coverage: must be >= 0, got -0.5"),
])
def test_bad_evaluate_options_exit_2_with_one_line(options, message, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"task": "translate"}')
    code, err = run_main(["evaluate", str(run), *options], capsys)
    assert code == 2
    assert error_line(err) == f"rnnkit evaluate {run}: error: {message}"


@pytest.mark.parametrize("task,text,message", [
    ("lm", "[data]\nbptt = 0\n", "data.bptt must be in [1, 1000000], got 0"),
    ("lm", "[data]\nmax_vocab = 1\n", "data.max_vocab must be in [3, 10000000], got 1"),
    ("lm", "[model]\nhidden_size = 1000000\n", "model.hidden_size must be in [1, 65536], got 1000000"),
    ("lm", "[train]\nlog_every = 0\n", "train.log_every must be >= 1, got 0"),
    ("lm", "[train]\nlr = nan\n", "train.lr must be a finite number > 0, got nan"),
    ("tag", "[model]\ndropout = 1.0\n", "model.dropout must be in [0, 1), got 1.0"),
    ("forecast", "[data]\nhorizon = 0\n", "data.horizon must be in [1, 1000000], got 0"),
    ("translate", "[model]\nattention = 'bahdanau'\n",
     "model.attention must be one of none, dot, general, additive, got 'bahdanau'"),
])
def test_bad_config_files_exit_2_with_one_line(task, text, message, tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    code, err = run_main(["train", task, "--config", str(path), "--run", str(tmp_path / "run")], capsys)
    assert code == 2
    assert err == f"rnnkit: error: {path}: {message}\n"
    assert not (tmp_path / "run").exists()  # refused before anything was started
