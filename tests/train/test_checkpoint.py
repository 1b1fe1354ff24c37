"""Checkpoint integrity and durability: checksums, truncated/tampered/hostile files, failed
writes (full disk) and unwritable run folders."""

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from rnnkit.cli import main
from rnnkit.errors import CheckpointError
from rnnkit.train import TrainConfig, Trainer, load_weights, read_state, resolve_checkpoint
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.checkpoint import CHECKSUMS, FORMAT_VERSION, copy_checkpoint, save_checkpoint


def model():
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 4)


STATE = {"step": 7, "optimizer": {"state": {0: {"exp_avg": torch.ones(2, 2)}}}, "rng": [1, 2, 3]}


@pytest.fixture
def saved(tmp_path):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, "step_00000007", model(), STATE)
    return root / "step_00000007"


def reseal(folder: Path) -> None:
    """Rewrite the checksums after changing a file: what a forger (or a careless script) does."""
    ckpt._seal(folder)


def test_checksums_in_sha256sum_format_and_a_clean_round_trip(saved):
    lines = (saved / CHECKSUMS).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["model.safetensors", "state.safetensors", "state.json"]
    assert json.loads((saved / "state.json").read_text())["format_version"] == FORMAT_VERSION == 2
    assert read_state(saved)["step"] == 7
    other = model()
    torch.nn.init.zeros_(other.weight_hh_l0)
    load_weights(other, saved)
    torch.testing.assert_close(other.weight_hh_l0, model().weight_hh_l0)


@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "state.json"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "append"])
def test_truncated_or_tampered_file_is_refused_naming_it(saved, name, damage):
    file = saved / name
    data = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        pos = len(data) - 3
        file.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
    elif damage == "empty":
        file.write_bytes(b"")
    else:
        file.write_bytes(data + b"\n")
    with pytest.raises(CheckpointError, match=rf"{name}: checksum mismatch"):
        if name == "model.safetensors":
            load_weights(model(), saved)
        else:
            read_state(saved)


def test_missing_or_malformed_checksum_file(saved):
    (saved / CHECKSUMS).write_text("not a checksum\n")
    with pytest.raises(CheckpointError, match=rf"{CHECKSUMS}:1: expected '<sha256 hex>  <file name>'"):
        read_state(saved)
    (saved / CHECKSUMS).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable checksum file"):
        read_state(saved)
    (saved / CHECKSUMS).unlink()
    with pytest.raises(CheckpointError, match=f"incomplete checkpoint, missing {CHECKSUMS}"):
        load_weights(model(), saved)


class Exploit:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "state.json"])
def test_a_pickle_in_place_of_a_file_never_runs(saved, tmp_path, name):
    marker = tmp_path / "pwned"
    (saved / name).write_bytes(pickle.dumps(Exploit(marker)))
    reseal(saved)  # even with matching checksums
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_weights(model(), saved) if name == "model.safetensors" else read_state(saved)
    assert not marker.exists()
    torch.save({"x": Exploit(marker)}, saved / name)  # torch's own (pickle) format
    reseal(saved)
    with pytest.raises(CheckpointError):
        load_weights(model(), saved) if name == "model.safetensors" else read_state(saved)
    assert not marker.exists()


@pytest.mark.parametrize("text,match", [
    ("[1, 2]", "not an rnnkit checkpoint state"),
    ('{"format_version": 2}', "not an rnnkit checkpoint state"),
    ('{"format_version": 99, "state": {}}', "checkpoint format 99, this rnnkit reads formats 1, 2"),
    ('{"format_version": 2, "state": {"x": {"__tensor__": "nope"}}}', "refers to a tensor 'nope'"),
    ('{"format_version": 2, "sta', "unreadable checkpoint state"),
])
def test_well_sealed_but_wrong_state_json(saved, text, match):
    (saved / "state.json").write_text(text)
    reseal(saved)
    with pytest.raises(CheckpointError, match=match):
        read_state(saved)


def test_garbage_safetensors_with_matching_checksums(saved):
    for name in ("model.safetensors", "state.safetensors"):
        (saved / name).write_bytes(os.urandom(64))
    reseal(saved)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable weights"):
        load_weights(model(), saved)
    with pytest.raises(CheckpointError, match=r"state\.safetensors: unreadable tensors"):
        read_state(saved)


def test_format_1_checkpoints_are_still_read(saved):
    data = json.loads((saved / "state.json").read_text())
    (saved / "state.json").write_text(json.dumps({**data, "format_version": 1}))
    (saved / CHECKSUMS).unlink()
    assert read_state(saved)["step"] == 7
    load_weights(model(), saved)


@pytest.mark.parametrize("pointer", ["../../etc", "", "a/b", "step_00000001\nstep_2"])
def test_a_bad_last_pointer_is_refused(saved, pointer):
    (saved.parent / "last").write_text(pointer)
    with pytest.raises(CheckpointError, match="last: expected the name of a checkpoint folder"):
        resolve_checkpoint(saved.parent)


def test_tidying_and_copying_never_follow_links(saved, tmp_path):
    root, outside = saved.parent, tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("root:x:0:0:secret\n")
    (root / ".old-step_00000009").symlink_to(outside, target_is_directory=True)
    ckpt.remove_leftovers(root)  # a planted link is removed, neither followed nor put in place
    assert not os.path.lexists(root / ".old-step_00000009") and not os.path.lexists(root / "step_00000009")
    assert (outside / "keep").exists()
    (root / "last").unlink()
    (root / "last").symlink_to(outside / "keep")
    assert ckpt._pointed(root) is None  # the failed-write message never shows what a link points at
    (saved / "state.json").unlink()
    (saved / "state.json").symlink_to(outside / "keep")
    with pytest.raises(CheckpointError, match=r"state\.json: a symbolic link"):
        copy_checkpoint(root, saved.name, "best")
    assert not (root / "best").exists() and not list(root.glob(".tmp-*"))


def test_kill_while_replacing_a_same_named_checkpoint_leaves_one_copy(saved):
    root = saved.parent
    os.replace(saved, root / ".old-step_00000007")  # killed between the two renames of _install
    assert resolve_checkpoint(root) == root / ".old-step_00000007"
    assert read_state(root)["step"] == 7
    save_checkpoint(root, "step_00000008", model(), {**STATE, "step": 8})
    assert not list(root.glob(".old-*")) and not list(root.glob(".tmp-*"))
    assert read_state(root)["step"] == 8


def test_resume_tidies_what_a_killed_write_left(tmp_path):
    trainer(tmp_path, epochs=1).fit()
    root = tmp_path / "checkpoints"
    (root / ".tmp-abc").mkdir()
    os.replace(root / "best", root / ".old-best")  # killed while replacing best
    assert ckpt.task_checkpoint(tmp_path, "counting")[0] == root / ".old-best"
    trainer(tmp_path).resume()
    assert sorted(p.name for p in root.iterdir()) == ["best", "last", "step_00000004"]


def test_resaving_the_same_name_replaces_it(saved):
    save_checkpoint(saved.parent, saved.name, model(), {**STATE, "step": 70})
    assert read_state(saved.parent)["step"] == 70
    copy_checkpoint(saved.parent, saved.name, "best")
    copy_checkpoint(saved.parent, saved.name, "best")
    assert read_state(saved.parent / "best")["step"] == 70
    assert sorted(p.name for p in saved.parent.iterdir()) == ["best", "last", "step_00000007"]


# ----------------------------------------------------------------------- failed writes
def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def safetensors_no_space(*args, **kwargs):  # how safetensors itself reports it
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("where,fail", [("save_file", no_space), ("save_model", safetensors_no_space),
                                        ("_seal", no_space), ("_write_pointer", no_space)])
def test_disk_full_at_save_keeps_the_previous_checkpoint(saved, monkeypatch, where, fail):
    root = saved.parent
    monkeypatch.setattr(ckpt, where, fail)
    with pytest.raises(CheckpointError, match=r"step_00000008: cannot write the checkpoint \(.*No space left on "
                                              r"device.*\); the previous checkpoint .*step_00000007 is intact"):
        save_checkpoint(root, "step_00000008", model(), {**STATE, "step": 8})
    monkeypatch.undo()
    assert not list(root.glob(".tmp-*"))
    if where != "_write_pointer":  # there the new folder was complete; only `last` was not moved
        assert not (root / "step_00000008").exists()
    assert resolve_checkpoint(root) == saved and read_state(root)["step"] == 7
    load_weights(model(), root)


class Counting:
    """A tiny task: a linear map learned on fixed batches."""

    def __init__(self):
        torch.manual_seed(0)
        self.batches = [(torch.randn(4, 3), torch.randn(4, 2)) for _ in range(4)]

    def train_batches(self, epoch):
        return self.batches

    def train_step(self, model, batch, state):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y), len(x), None

    def evaluate(self, model, split):
        with torch.no_grad():
            return {"loss": float(sum(torch.nn.functional.mse_loss(model(x), y) for x, y in self.batches))}

    def meta(self):
        return {"task": "counting"}


def trainer(run, **cfg):
    return Trainer(torch.nn.Linear(3, 2), Counting(), TrainConfig(**{"progress": False, "epochs": 2, **cfg}), run)


def test_disk_full_during_training_stops_with_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    t = trainer(tmp_path, checkpoint_every=2)
    real = ckpt.save_file
    calls = []

    def fills_up(tensors, filename):
        calls.append(filename)
        if len(calls) == 2:
            no_space()
        real(tensors, filename)

    monkeypatch.setattr(ckpt, "save_file", fills_up)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint .*step_00000002 is intact"):
        t.fit()
    assert read_state(tmp_path)["step"] == 2
    fresh = trainer(tmp_path, checkpoint_every=2)
    fresh.resume()
    assert fresh.step == 2


def test_run_folder_that_cannot_be_created_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match=r"a-file/run/checkpoints: cannot write checkpoints here \(Not a directory\)"):
        trainer(blocker / "run")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder_is_refused_before_training(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints").chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="cannot write checkpoints here"):
            trainer(run)
    finally:
        (run / "checkpoints").chmod(0o755)


def test_unwritable_run_folder_is_refused_before_training(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(ckpt.tempfile, "mkstemp", denied)  # as a read-only folder answers (also for root)
    with pytest.raises(CheckpointError, match=r"run/checkpoints: cannot write checkpoints here \(Permission denied\)"):
        trainer(tmp_path / "run")


def test_a_disk_without_room_for_a_checkpoint_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 1000))
    with pytest.raises(CheckpointError, match=r"0.0 MiB free on this disk, but a checkpoint needs about 1.0 MiB"):
        trainer(tmp_path / "run")


def test_cli_reports_an_unusable_run_folder_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data = tmp_path / "corpus.txt"
    data.write_text("the cat sat on the mat.\n" * 100)
    rc = main(["train", "lm", "--data", str(data), "--run", str(blocker / "run"), "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Not a directory" in err and "a-file" in err


def test_resume_from_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    trainer(tmp_path, max_steps=2).fit()
    other = Trainer(torch.nn.Linear(3, 2, bias=False), Counting(), TrainConfig(progress=False), tmp_path / "other")
    with pytest.raises(CheckpointError, match="weights do not fit this model"):
        other.resume(tmp_path)
    where = resolve_checkpoint(tmp_path)
    data = json.loads((where / "state.json").read_text())
    del data["state"]["bad_epochs"]
    (where / "state.json").write_text(json.dumps(data))
    reseal(where)
    with pytest.raises(CheckpointError, match="does not fit this run \\(KeyError: 'bad_epochs'\\)"):
        trainer(tmp_path).resume()


def test_cli_refuses_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 40)
    run = tmp_path / "run"
    args = ["train", "lm", "--data", str(data), "--run", str(run), "--epochs", "1", "--bptt", "10", "--batch-size", "4",
            "--hidden-size", "8", "--embed-size", "4", "--num-layers", "1", "--no-progress", "--sample-length", "0"]
    assert main(args) == 0
    weights = resolve_checkpoint(run) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # a copy cut short
    capsys.readouterr()
    for command in (["evaluate", str(run), "--checkpoint", "last"], ["sample", str(run), "--checkpoint", "last"],
                    args + ["--resume"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "model.safetensors: checksum mismatch" in err, err


def test_average_of_checkpoints_is_the_mean_of_their_weights(tmp_path):
    from rnnkit.train.checkpoint import average_checkpoints, task_checkpoint

    root = tmp_path / "run" / "checkpoints"
    nets = []
    for i, step in enumerate((10, 20, 30)):
        torch.manual_seed(i)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Embedding(5, 2)).to(torch.float32)
        nets.append(net)
        save_checkpoint(root, f"step_{step:08d}", net, {"step": step, "task": {"task": "demo"}}, keep=3)
    folder = average_checkpoints(root, ["step_00000010", "step_00000020", "step_00000030"], "avg")
    assert (root / "last").read_text().strip() == "step_00000030"  # left alone
    averaged = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Embedding(5, 2))
    load_weights(averaged, folder)  # sealed: the checksums verify
    for key, value in averaged.state_dict().items():
        expected = torch.stack([n.state_dict()[key] for n in nets]).mean(0)
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
        assert value.dtype == torch.float32
    state = read_state(folder)
    assert state["step"] == 30
    assert json.loads((folder / "state.json").read_text())["averaged_from"] == [
        "step_00000010", "step_00000020", "step_00000030"]
    where, meta = task_checkpoint(tmp_path / "run", "demo", "avg")
    assert where == folder and meta == {"task": "demo"}

    with pytest.raises(CheckpointError, match="at least two checkpoints"):
        average_checkpoints(root, ["step_00000010"], "avg2")
    with pytest.raises(CheckpointError, match="choose a new plain name"):
        average_checkpoints(root, ["step_00000010", "step_00000020"], "last")
    with pytest.raises(CheckpointError, match=r"step_00000099: no such checkpoint; .* holds avg, step_00000010"):
        average_checkpoints(root, ["step_00000010", "step_00000099"], "avg2")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        task_checkpoint(tmp_path / "run", "demo", "nope")
    save_checkpoint(root, "wide", torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Embedding(5, 2)), STATE, keep=3)
    with pytest.raises(CheckpointError, match=r"wide: tensor 0.bias has shape \(5,\), expected \(4,\)"):
        average_checkpoints(root, ["step_00000010", "wide"], "avg3")
    (root / "step_00000020" / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        average_checkpoints(root, ["step_00000010", "step_00000020"], "avg4")
