"""`rnnkit train ... --device cuda --bf16` without a GPU: the Trainer's autocast decision
(``trainer.autocast_dtype``) is patched to autocast the CPU to bfloat16, which runs the same
mixed-precision code paths the CUDA commands take: tiny language-model, tagging and
translation runs train under it, keep float32 checkpoints and carried state, and evaluate,
sample, tag and translate.  The real ``--device cuda`` on a machine without CUDA must fail
naming the device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import rnnkit.train.trainer as trainer_module
from rnnkit.cli import main
from rnnkit.train.checkpoint import _seal
from tests.tasks.tag.test_task import write_treebank
from tests.tasks.translate.test_task import PAIRS

TAG_SIZES = ["--hidden-size", "16", "--num-layers", "1", "--word-embed", "8", "--char-hidden", "8",
             "--char-embed", "8", "--lr", "0.01", "--batch-size", "16", "--no-progress", "--dropout", "0"]


class Autocast:
    """Autocast on the CPU in the training steps, and what ran under it: the dtypes of the
    training forward's Linear outputs (bfloat16 when autocast really was on)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, bool]] = []
        self.linear_dtypes: set[torch.dtype] = set()

    def dtype(self, device: torch.device, bf16: bool):
        self.asked.append((device.type, bf16))
        return torch.bfloat16 if bf16 else None

    def hook(self, module, args, output) -> None:
        if module.training and isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
            self.linear_dtypes.add(output.dtype)


def train_under_cpu_autocast(argv: list[str]) -> Autocast:
    seen = Autocast()
    handle = torch.nn.modules.module.register_module_forward_hook(seen.hook)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trainer_module, "autocast_dtype", seen.dtype)
            assert main(argv) == 0
    finally:
        handle.remove()
    assert seen.asked and set(seen.asked) == {("cpu", True)}
    assert torch.bfloat16 in seen.linear_dtypes  # the training forward ran in mixed precision
    return seen


def checkpoint_dtypes(run: Path) -> dict[str, dict]:
    """{"model" | "state": {tensor name: dtype}} of the run's last checkpoint."""
    folder = run / "checkpoints" / (run / "checkpoints" / "last").read_text().strip()
    dtypes = {}
    for part in ("model", "state"):
        with safe_open(folder / f"{part}.safetensors", "pt") as handle:
            dtypes[part] = {key: handle.get_tensor(key).dtype for key in handle.keys()}
    return dtypes


def assert_float32_checkpoint(run: Path) -> dict:
    dtypes = checkpoint_dtypes(run)
    assert set(dtypes["model"].values()) == {torch.float32}
    floating = {k: d for k, d in dtypes["state"].items() if d.is_floating_point}
    assert floating and set(floating.values()) == {torch.float32}, floating
    return dtypes


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bf16")
    corpus = root / "corpus.txt"
    corpus.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 60, encoding="utf-8")
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 2), encoding="utf-8")
    treebank = write_treebank(root / "toy")
    runs = {name: root / name for name in ("lm", "tag", "translate")}
    # stopped mid-epoch, so that the checkpoint carries the LM's recurrent state
    train_under_cpu_autocast(["train", "lm", "--data", str(corpus), "--run", str(runs["lm"]), "--epochs", "2",
                              "--bptt", "20", "--batch-size", "4", "--hidden-size", "16", "--embed-size", "8",
                              "--num-layers", "1", "--lr", "0.01", "--max-steps", "40", "--bf16",
                              "--no-progress", "--sample-length", "10"])
    train_under_cpu_autocast(["train", "tag", "--data", str(treebank), "--run", str(runs["tag"]), "--epochs", "1",
                              "--crf", "--bf16", *TAG_SIZES])
    train_under_cpu_autocast(["train", "translate", "--data", str(pairs), "--run", str(runs["translate"]),
                              "--valid", "2", "--test", "2", "--min-count", "1", "--hidden-size", "16",
                              "--embed-size", "8", "--epochs", "2", "--batch-size", "4", "--no-progress",
                              "--attention", "additive", "--bf16"])
    return runs


def test_autocast_dtype_is_bfloat16_on_cuda_only():
    autocast_dtype = trainer_module.autocast_dtype
    assert autocast_dtype(torch.device("cuda"), True) is torch.bfloat16
    assert autocast_dtype(torch.device("cuda", 1), True) is torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), False) is None
    assert autocast_dtype(torch.device("cpu"), True) is None


def test_lm_trained_under_autocast_keeps_float32_and_evaluates_and_samples(runs, capsys):
    run = runs["lm"]
    dtypes = assert_float32_checkpoint(run)
    assert any(key.startswith("state.carry") for key in dtypes["state"])  # the carried state, in float32
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    bpc = float(capsys.readouterr().out.split("bpc ")[1].split(",")[0])
    assert 0 < bpc < 5
    assert main(["sample", str(run), "--prime", "the ", "--length", "20", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("the ")


@pytest.mark.parametrize("saved_in_bf16", [False, True])
def test_lm_trained_under_autocast_resumes_without_it(runs, tmp_path, capsys, saved_in_bf16):
    # as a run trained on a GPU with --bf16 and resumed on the CPU: the carry must fit float32
    # layers, also when the checkpoint holds it in bfloat16 (written before it was kept float32)
    run = tmp_path / "lm"
    shutil.copytree(runs["lm"], run)
    if saved_in_bf16:
        folder = run / "checkpoints" / (run / "checkpoints" / "last").read_text().strip()
        tensors = load_file(folder / "state.safetensors")
        for key in tensors:
            if key.startswith("state.carry"):
                tensors[key] = tensors[key].to(torch.bfloat16)
        with safe_open(folder / "state.safetensors", "pt") as handle:
            metadata = handle.metadata()
        save_file(tensors, folder / "state.safetensors", metadata=metadata)
        _seal(folder)
        assert checkpoint_dtypes(run)["state"]["state.carry.0"] == torch.bfloat16
    record = json.loads((run / "config.json").read_text())
    capsys.readouterr()
    assert main(["train", "lm", "--run", str(run), "--resume", "--max-steps", "44", "--no-progress",
                 "--data", record["data"]["data"], "--sample-length", "5"]) == 0
    assert "max_steps at step 44" in capsys.readouterr().out
    assert_float32_checkpoint(run)


def test_tagger_trained_under_autocast_evaluates_and_tags(runs, capsys):
    run = runs["tag"]
    assert_float32_checkpoint(run)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy ")[1].split()[0])
    assert 0 <= accuracy <= 1
    assert main(["tag", "--run", str(run), "--format", "tsv", "the y a x a.", "B x c"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [line.split("\t")[0] for line in lines] == ["the", "y", "a", "x", "a", ".", "B", "x", "c"]


def test_translation_trained_under_autocast_evaluates_and_translates(runs, capsys):
    run = runs["translate"]
    assert_float32_checkpoint(run)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--beam", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].startswith("greedy\t") and rows[2].startswith("beam2\t")
    assert main(["translate", "Tom is cold.", "I like Tom.", "--run", str(run), "--beam", "3", "--n-best", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["translate", "Tom is cold.", "--run", str(run), "--temperature", "1.0", "--seed", "1"]) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "tag", "translate"])
def test_device_cuda_without_cuda_fails_naming_the_device(runs, tmp_path, capsys, command):
    argv = {
        "train": ["train", "lm", "--data", str(runs["lm"].parent / "corpus.txt"), "--run", str(tmp_path / "r"),
                  "--device", "cuda", "--bf16", "--no-progress"],
        "evaluate": ["evaluate", str(runs["lm"]), "--device", "cuda"],
        "sample": ["sample", str(runs["lm"]), "--device", "cuda"],
        "tag": ["tag", "--run", str(runs["tag"]), "--device", "cuda", "a b"],
        "translate": ["translate", "Tom is cold.", "--run", str(runs["translate"]), "--device", "cuda"],
    }[command]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "device 'cuda' was asked for but CUDA is not available here" in err
    assert "use --device cpu or auto" in err
