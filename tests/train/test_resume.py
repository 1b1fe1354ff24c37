"""`--resume` continues a run with the run's own settings: for each task, a run stopped early
and resumed with no settings ends with the weights of an uninterrupted run; a setting that
would change the model, the data or the optimization is refused and the record stays as it was;
two trainings in one folder cannot run at once."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rnnkit.cli import main
from rnnkit.train.checkpoint import read_state, resolve_checkpoint
from tests.audio_fixtures import tone_folder
from tests.tasks.tag.test_task import write_treebank
from tests.tasks.translate.test_task import PAIRS

REPO = Path(__file__).resolve().parents[2]


def _lm(tmp: Path) -> list[str]:
    data = tmp / "corpus.txt"
    data.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 40)
    return ["lm", "--data", str(data), "--bptt", "10", "--batch-size", "4", "--hidden-size", "8",
            "--embed-size", "4", "--num-layers", "1", "--dropout", "0.25", "--sample-length", "0"]


def _tag(tmp: Path) -> list[str]:
    return ["tag", "--data", str(write_treebank(tmp / "treebank")), "--hidden-size", "8", "--num-layers", "1",
            "--word-embed", "8", "--char-hidden", "4", "--char-embed", "4", "--batch-size", "16"]


def _translate(tmp: Path) -> list[str]:
    data = tmp / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 2), encoding="utf-8")
    return ["translate", "--data", str(data), "--valid", "2", "--test", "2", "--min-count", "1",
            "--hidden-size", "8", "--embed-size", "8", "--batch-size", "4", "--eval-bleu", "0"]


def _speech(tmp: Path) -> list[str]:
    return ["speech", "--data", str(tone_folder(tmp / "wavs", repetitions=4)), "--test-indices", "0",
            "--valid-indices", "1", "--hidden-size", "6", "--train-sequences", "32", "--eval-sequences", "8",
            "--cell", "gru"]


TASKS = {"lm": _lm, "tag": _tag, "translate": _translate, "speech": _speech}
# a setting of each section that no resume may change, with a value other than the run's
FORBIDDEN = {
    "lm": [["--hidden-size", "16"], ["--dropout", "0.0"], ["--bptt", "12"], ["--batch-size", "2"],
           ["--optimizer", "sgd"], ["--seed", "3"], ["--level", "word"]],
    "tag": [["--hidden-size", "16"], ["--batch-size", "8"], ["--no-bidirectional"], ["--crf"]],
    "translate": [["--attention", "dot"], ["--embed-size", "16"], ["--max-length", "10"]],
    "speech": [["--hidden-size", "12"], ["--train-sequences", "16"], ["--no-bidirectional"]],
}


def _weights(run: Path) -> dict:
    return load_file(str(resolve_checkpoint(run) / "model.safetensors"))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_resume_keeps_the_run_s_settings(task, tmp_path, capsys):
    args = ["train"] + TASKS[task](tmp_path) + ["--epochs", "2", "--no-progress"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(args + ["--run", str(whole)]) == 0
    assert main(args + ["--run", str(parts), "--max-steps", "3"]) == 0
    record = (parts / "config.json").read_bytes()
    stopped = read_state(parts)["step"]
    capsys.readouterr()

    for extra in FORBIDDEN[task] + [["--lr", "0.5"]]:
        assert main(["train", task, "--run", str(parts), "--resume"] + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--resume keeps the run's settings" in err and " in the run, given " in err
        assert (parts / "config.json").read_bytes() == record  # a refused resume writes nothing
    assert not (parts / "resumes.jsonl").exists()

    # no settings at all: the run's own, the data included; --max-steps 0 lifts the stop
    assert main(["train", task, "--run", str(parts), "--resume", "--max-steps", "0", "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert (parts / "config.json").read_bytes() == record
    resumes = [json.loads(line) for line in (parts / "resumes.jsonl").read_text().splitlines()]
    assert len(resumes) == 1 and resumes[0]["step"] == stopped and resumes[0]["changed"] == {"train.max_steps": [3, 0]}
    final, reference = _weights(parts), _weights(whole)
    assert final.keys() == reference.keys()
    for name in final:
        assert final[name].equal(reference[name]), name


def test_override_lets_the_learning_rate_change(tmp_path, capsys):
    args = ["train"] + _lm(tmp_path) + ["--run", str(tmp_path / "run"), "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(["train", "lm", "--run", str(tmp_path / "run"), "--resume", "--epochs", "2", "--lr", "0.01",
                 "--override"]) == 0
    out = capsys.readouterr().out
    assert "changed on resume: train.epochs 1 -> 2, train.lr 0.002 -> 0.01" in out
    state = read_state(tmp_path / "run")
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.01  # the optimizer took it, not only the record
    assert main(["train", "lm", "--run", str(tmp_path / "other"), "--override"]) == 2
    assert "--override goes with --resume" in capsys.readouterr().err


def test_resume_needs_a_run_with_a_checkpoint(tmp_path, capsys):
    assert main(["train", "lm", "--resume"]) == 2
    assert "--resume needs --run RUN" in capsys.readouterr().err
    assert main(["train", "lm", "--run", str(tmp_path), "--resume"]) == 2
    assert "config.json: missing" in capsys.readouterr().err


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, cwd=REPO)


def test_two_trainings_in_one_folder_the_second_is_refused(tmp_path):
    run = tmp_path / "run"
    first = _start(_lm(tmp_path) + ["--run", str(run), "--epochs", "1000", "--no-progress"], tmp_path / "first.log")
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last").exists() and time.time() < deadline:
            time.sleep(0.2)
        record = (run / "config.json").read_bytes()
        for extra in (["--resume", "--epochs", "1001"], _lm(tmp_path)[1:] + ["--hidden-size", "16"]):
            second = subprocess.run([sys.executable, "-m", "rnnkit", "train", "lm", "--run", str(run), *extra,
                                     "--no-progress"], capture_output=True, text=True,
                                    env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=120)
            assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
            assert f"is in use by another training (pid {first.pid} on " in second.stderr
            assert (run / "config.json").read_bytes() == record  # the first run's record is untouched
        assert first.poll() is None, "the first training must still be running, unharmed"
    finally:
        first.kill()  # kill -9: the operating system drops its lock with it
        first.wait()
    assert main(["train", "lm", "--run", str(run), "--resume", "--epochs", "1", "--no-progress"]) == 0


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_default(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train"] + _lm(tmp_path) + ["--run", str(run), "--epochs", "1", "--no-progress"]) == 0
    record = json.loads((run / "config.json").read_text())
    del record["model"]["tie_weights"]  # as if the run predates the setting
    (run / "config.json").write_text(json.dumps(record))
    assert main(["train", "lm", "--run", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert main(["train", "lm", "--run", str(run), "--resume", "--epochs", "3", "--tie-weights"]) == 2
    assert "model.tie_weights is '(not recorded: the default)' in the run, given True" in capsys.readouterr().err
