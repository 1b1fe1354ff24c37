"""The task registry and the interface every task package provides."""

import json
import os

import pytest

from rnnkit.cli import build_parser, main
from rnnkit.errors import CheckpointError
from rnnkit.tasks.base import TASK_NAMES, Task, all_tasks, get_task, task_of_run

PROTOCOL = [name for name in dir(Task) if not name.startswith("_")] + list(Task.__annotations__)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_provides_the_interface(name):
    task = get_task(name)
    missing = [attr for attr in PROTOCOL if not hasattr(task, attr)]
    assert not missing, f"rnnkit.tasks.{name}.commands lacks {missing}"
    assert task.NAME == name and len(task.CONFIGS) == 3


def test_the_cli_has_a_train_command_per_task(capsys):
    parser, handlers = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in TASK_NAMES)
    assert {"sample", "tag", "translate", "forecast"} <= set(handlers)


def test_old_task_names_map_to_today_s():
    assert get_task("tagging") is get_task("tag") and get_task("translation") is get_task("translate")
    with pytest.raises(ValueError, match="unknown task 'fly'; known: lm, tag"):
        get_task("fly")


@pytest.mark.parametrize("name,has,lacks", [
    ("translate", ["--beam", "--unk", "--data"], ["--ensemble"]),
    ("tag", ["--ensemble", "--data"], ["--beam"]),
    ("forecast", ["--split"], ["--data", "--beam"]),
])
def test_evaluate_offers_the_options_of_the_run_s_task(tmp_path, capsys, name, has, lacks):
    (tmp_path / "config.json").write_text(json.dumps({"task": name}))
    assert main(["evaluate", str(tmp_path), "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Evaluate this {name} run" in out
    assert all(flag in out for flag in has) and not any(flag in out for flag in lacks)


def test_evaluate_refuses_another_task_s_option(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"task": "forecast"}))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path), "--beam", "3"])
    assert exc.value.code == 2 and "unrecognized arguments: --beam 3" in capsys.readouterr().err


def test_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        task_of_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"task": "juggling"}))
    with pytest.raises(CheckpointError, match="unknown task 'juggling'"):
        task_of_run(tmp_path)


def test_registry_order_is_the_names():
    assert [task.NAME for task in all_tasks()] == list(TASK_NAMES)


def test_a_run_is_chosen_by_flag_or_position_once(tmp_path, monkeypatch):
    import argparse

    from rnnkit.tasks.base import add_run_option, chosen_run

    parser = argparse.ArgumentParser()
    add_run_option(parser, "lm", positional=True)
    assert chosen_run(parser.parse_args(["a"]), "lm") == chosen_run(parser.parse_args(["--run", "a"]), "lm")
    with pytest.raises(ValueError, match="give the run once: --run a or b, not both"):
        chosen_run(parser.parse_args(["b", "--run", "a"]), "lm")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="no lm run under runs/"):
        chosen_run(parser.parse_args([]), "lm")
    for name, age in (("lm-old", 100), ("lm-new", 0), ("tag-x", 0)):
        last = tmp_path / "runs" / name / "checkpoints" / "last"
        last.parent.mkdir(parents=True)
        last.write_text("step_1")
        os.utime(last, (1e9 - age, 1e9 - age))
    assert chosen_run(parser.parse_args([]), "lm").name == "lm-new"
