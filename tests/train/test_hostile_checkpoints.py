"""Hostile checkpoints and run records: every malformed one is a CheckpointError of one line
naming the file (and the field), never a traceback, never an unverified or oversized load, and
never a message that shows what the file (or what a link pointed at) holds.

Each task's run is written here directly (a tiny model saved with the task's own metadata, no
training), then edited the way a forger would: the checksums are rewritten to match, so what is
tested is the checking of the content itself.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data.text import UNK, Vocab
from rnnkit.data.vocab import SPECIALS, TokenVocab
from rnnkit.errors import CheckpointError
from rnnkit.tasks.forecast import predictor as forecast_predictor
from rnnkit.tasks.forecast.predictor import ForecastPredictor
from rnnkit.tasks.forecast.run import ForecastDataConfig
from rnnkit.tasks.forecast.task import Forecaster, ForecastModelConfig, ForecastTrainConfig
from rnnkit.tasks.forecast.transform import SeriesTransform
from rnnkit.tasks.lm import predictor as lm_predictor
from rnnkit.tasks.lm.predictor import LMPredictor
from rnnkit.tasks.lm.task import LanguageModel, LMDataConfig, LMModelConfig
from rnnkit.tasks.speech import predictor as speech_predictor
from rnnkit.tasks.speech.predictor import SpeechPredictor
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig
from rnnkit.tasks.speech.task import build_model as speech_model
from rnnkit.tasks.tag import predictor as tag_predictor
from rnnkit.tasks.tag.predictor import TagPredictor
from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig, Vocabularies
from rnnkit.tasks.tag.task import build_model as tag_model
from rnnkit.tasks.translate import predictor as translate_predictor
from rnnkit.tasks.translate.pairs import WordTokenizer
from rnnkit.tasks.translate.predictor import TranslatePredictor
from rnnkit.tasks.translate.task import TranslationDataConfig, TranslationModelConfig
from rnnkit.tasks.translate.task import build_model as translate_model
from rnnkit.train import TrainConfig, Trainer, read_state, record_schema, resolve_checkpoint
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.checkpoint import CHECKSUMS, save_checkpoint

# What a hostile file holds, and what no message may ever show: a line of /etc/passwd.
SECRET = "root:x:0:0:s3cr3t-content:/root:/bin/bash"
MARKERS = ("s3cr3t", "/bin/bash")


def refused(load, file: str, field: str = "") -> str:
    """``load()`` raises a one-line CheckpointError naming ``file`` (and ``field``) and showing
    nothing of what the files held; the message."""
    with pytest.raises(CheckpointError) as info:
        load()
    message = str(info.value)
    assert "\n" not in message, message
    assert file in message, message
    assert field in message, message
    assert not any(marker in message for marker in MARKERS), message
    return message


# ------------------------------------------------------------------------------- tiny runs
def save(run: Path, model: torch.nn.Module, meta: dict, name: str = "step_00000001") -> Path:
    return save_checkpoint(run / "checkpoints", name, model, {"step": 1, "task": meta})


def lm_run(run: Path) -> Path:
    vocab = Vocab([UNK, *"abcdef "], "char")
    cfg = LMModelConfig(embed_size=4, hidden_size=8, num_layers=1)
    meta = {"task": "lm", "vocab": vocab.to_dict(), "model": asdict(cfg), "data": asdict(LMDataConfig()),
            "source": "corpus.txt"}
    save(run, LanguageModel(len(vocab), cfg), meta)
    return run


def tag_run(run: Path) -> Path:
    words, chars = TokenVocab([*SPECIALS, "the", "cat"]), TokenVocab([*SPECIALS, *"thca"])
    vocab = Vocabularies(words, chars, ["DET", "NOUN"], True, {"the": 2, "cat": 1})
    cfg = TaggerModelConfig(word_embed=4, char_embed=3, char_hidden=4, hidden_size=5, num_layers=1)
    meta = {"task": "tag", "vocab": vocab.to_dict(), "model": asdict(cfg), "data": asdict(TaggingDataConfig()),
            "seed": 0, "source": "treebank"}
    save(run, tag_model(vocab, cfg), meta)
    return run


def translate_run(run: Path) -> Path:
    src, tgt = TokenVocab([*SPECIALS, "tom", "is"]), TokenVocab([*SPECIALS, "tom", "est", "."])
    cfg = TranslationModelConfig(embed_size=4, hidden_size=6, attention="additive")
    meta = {"task": "translate", "src_vocab": src.to_dict(), "tgt_vocab": tgt.to_dict(),
            "src_tokenizer": WordTokenizer().to_dict(), "tgt_tokenizer": WordTokenizer().to_dict(),
            "model": asdict(cfg), "data": asdict(TranslationDataConfig()), "seed": 0, "source": "pairs.tsv"}
    save(run, translate_model(len(src), len(tgt), cfg), meta)
    return run


def speech_run(run: Path) -> Path:
    cfg = SpeechModelConfig(hidden_size=6)
    meta = {"task": "speech", "input_size": 79, "normalizer": {"mean": [0.0] * 79, "std": [1.0] * 79},
            "model": asdict(cfg), "data": asdict(SpeechDataConfig()), "seed": 0, "source": "recordings"}
    save(run, speech_model(79, cfg), meta)
    return run


def forecast_run(run: Path) -> Path:
    cfg = ForecastModelConfig(hidden_size=5)
    transform = asdict(SeriesTransform())
    meta = {"task": "forecast", "model": asdict(cfg), "input_size": 3, "outputs": 1, "transform": transform}
    save(run / "members" / "0", Forecaster(3, 1, cfg), meta)
    record = {"task": "forecast", "data": asdict(ForecastDataConfig(csv="series.csv")), "model": asdict(cfg),
              "train": asdict(ForecastTrainConfig())}
    (run / "config.json").write_text(json.dumps(record), encoding="utf-8")
    info = {"task": "forecast", "members": ["members/0"], "transform": transform, "test": {"naive": {"mase": 1.0}}}
    (run / "forecast.json").write_text(json.dumps(info), encoding="utf-8")
    return run


RUNS = {"lm": (lm_run, LMPredictor), "tag": (tag_run, TagPredictor), "translate": (translate_run, TranslatePredictor),
        "speech": (speech_run, SpeechPredictor), "forecast": (forecast_run, ForecastPredictor)}


def make(tmp_path: Path, task: str) -> tuple[Path, type]:
    build, predictor = RUNS[task]
    return build(tmp_path / task), predictor


def checkpoint_of(run: Path, task: str) -> Path:
    return resolve_checkpoint(run / "members" / "0" if task == "forecast" else run)


def forge(run: Path, task: str, change) -> Path:
    """Apply ``change(state_json)`` to the checkpoint's state.json and rewrite the checksums."""
    where = checkpoint_of(run, task)
    data = json.loads((where / "state.json").read_text(encoding="utf-8"))
    change(data)
    (where / "state.json").write_text(json.dumps(data), encoding="utf-8")
    ckpt._seal(where)
    return where


def meta_edit(path: str, value=None, delete: bool = False):
    """A change of the task metadata at dotted ``path`` (``model.hidden_size``)."""

    def change(data):
        node = data["state"]["task"]
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        if delete:
            del node[last]
        else:
            node[last] = value

    return change


@pytest.mark.parametrize("task", list(RUNS))
def test_the_untouched_runs_load(tmp_path, task):
    run, predictor = make(tmp_path, task)
    assert isinstance(predictor.load(run, device="cpu"), predictor)
    assert isinstance(rnnkit.load(run, device="cpu"), predictor)


# ------------------------------------------------------------------------------- 1. state.json
# (task, metadata path, value or DELETE, the field the message must name)
DELETE = object()
HOSTILE_META = [
    # lm: vocab + model + data
    ("lm", "vocab", DELETE, "task.vocab"),
    ("lm", "vocab.itos", [1, 2, 3], "task.vocab.itos[0]"),
    ("lm", "vocab.itos", SECRET, "task.vocab.itos"),
    ("lm", "vocab.itos", list("abcdefgh"), "task.vocab.itos"),  # no <unk>
    ("lm", "vocab.itos", [UNK, "a", "a", *"bcdef"], "task.vocab.itos"),  # not distinct
    ("lm", "vocab.level", SECRET, "task.vocab.level"),
    ("lm", "vocab.extra", 1, "task.vocab.extra"),
    ("lm", "model", [SECRET], "task.model"),
    ("lm", "model.hidden_sizee", 8, "task.model.hidden_sizee"),
    ("lm", f"model.{SECRET}", 8, "task.model"),
    ("lm", "model.hidden_size", 10**12, "task.model.hidden_size"),
    ("lm", "model.hidden_size", 1e12, "task.model.hidden_size"),
    ("lm", "model.embed_size", 2_000_000, "task.model.embed_size"),
    ("lm", "model.embed_size", -4, "task.model.embed_size"),
    ("lm", "model.num_layers", True, "task.model.num_layers"),
    ("lm", "model.num_layers", "1", "task.model.num_layers"),
    ("lm", "model.dropout", float("nan"), "task.model.dropout"),
    ("lm", "model.dropout", 5.0, "task.model.dropout"),
    ("lm", "model.cell", SECRET, "task.model.cell"),
    ("lm", "model.init", SECRET, "task.model.init"),
    ("lm", "model.tie_weights", True, "task.model.tie_weights"),  # needs embed_size == hidden_size
    ("lm", "data", SECRET, "task.data"),
    ("lm", "data.bptt", "100", "task.data.bptt"),
    ("lm", "data.unknown", 1, "task.data.unknown"),
    ("lm", "source", [SECRET], "task.source"),
    ("lm", "extra", {}, "task.extra"),
    # tag: vocab (words/chars/tags) + model
    ("tag", "vocab.tags", DELETE, "task.vocab.tags"),
    ("tag", "vocab.tags", "DET", "task.vocab.tags"),
    ("tag", "vocab.words", DELETE, "task.vocab.words"),
    ("tag", "vocab.words.itos", ["the", "cat"], "task.vocab.words.itos"),  # no specials
    ("tag", "vocab.chars.itos", [*SPECIALS, 7], "task.vocab.chars.itos[4]"),
    ("tag", "vocab.counts", {"the": SECRET}, "task.vocab.counts.the"),
    ("tag", "vocab.lower", "yes", "task.vocab.lower"),
    ("tag", "model.char_hidden", 10**7, "task.model.char_hidden"),
    ("tag", "model.crf", "false", "task.model.crf"),
    ("tag", "seed", SECRET, "task.seed"),
    # translate: src/tgt vocab, tokenizers, model, data
    ("translate", "tgt_vocab", DELETE, "task.tgt_vocab"),
    ("translate", "src_vocab.itos", {"0": "<pad>"}, "task.src_vocab.itos"),
    ("translate", "src_tokenizer", DELETE, "task.src_tokenizer"),
    ("translate", "src_tokenizer.kind", SECRET, "task.src_tokenizer.kind"),
    ("translate", "tgt_tokenizer", {"kind": "subword", "lower": True}, "task.tgt_tokenizer"),
    ("translate", "tgt_tokenizer", {"kind": "subword", "lower": True, "model": SECRET}, "task.tgt_tokenizer"),
    ("translate", "tgt_tokenizer", {"kind": "subword", "lower": True, "model": base64.b64encode(SECRET.encode()).decode()},
     "task.tgt_tokenizer"),
    ("translate", "model.attention", SECRET, "task.model.attention"),
    ("translate", "model.hidden_size", 10**9, "task.model.hidden_size"),
    ("translate", "data.beam", 2.5, "task.data.beam"),
    ("translate", "data", DELETE, "task.data"),
    # speech: input_size, normalizer, model
    ("speech", "input_size", 10**12, "task.input_size"),
    ("speech", "input_size", "79", "task.input_size"),
    ("speech", "input_size", DELETE, "task.input_size"),
    ("speech", "normalizer", DELETE, "task.normalizer"),
    ("speech", "normalizer.mean", [0.0] * 3, "task.normalizer"),
    ("speech", "normalizer.std", [0.0] * 79, "task.normalizer.std"),
    ("speech", "normalizer.mean", [SECRET] * 79, "task.normalizer.mean[0]"),
    ("speech", "data.n_mfcc", 10**9, "task.data.n_mfcc"),
    ("speech", "model.bidirectional", None, "task.model.bidirectional"),
    # forecast: model, input_size, outputs
    ("forecast", "outputs", DELETE, "task.outputs"),
    ("forecast", "input_size", 10**7, "task.input_size"),
    ("forecast", "model.head", SECRET, "task.model.head"),
    ("forecast", "model.num_layers", 10**6, "task.model.num_layers"),
    ("forecast", "transform.difference", 2, "task.transform"),
    ("forecast", "transform.mean", "0", "task.transform.mean"),
]


@pytest.mark.parametrize("task,path,value,field", HOSTILE_META,
                         ids=[f"{t}-{p[:30]}-{type(v).__name__}" for t, p, v, _ in HOSTILE_META])
def test_hostile_task_metadata_is_refused_naming_the_field(tmp_path, task, path, value, field):
    run, predictor = make(tmp_path, task)
    forge(run, task, meta_edit(path, delete=True) if value is DELETE else meta_edit(path, value))
    refused(lambda: predictor.load(run, device="cpu"), "state.json", field)


# (task, metadata path, value, the field the message must name): settings inside every bound
# whose sizes disagree with the tensors of model.safetensors
DISAGREEING = [
    ("lm", "model.hidden_size", 60_000, "task.model.hidden_size"),
    ("lm", "vocab.itos", [UNK, *"abcdefghij"], "task.vocab.itos"),
    ("lm", "model.num_layers", 3, "task.model"),
    ("tag", "vocab.tags", ["DET", "NOUN", "VERB"], "task.vocab.tags"),
    ("translate", "model.embed_size", 40_000, "task.model.embed_size"),
    ("translate", "model.bidirectional", False, "task.model"),
    ("speech", "model.hidden_size", 50_000, "task.model.hidden_size"),
    ("forecast", "input_size", 7, "task.input_size"),
]


@pytest.mark.parametrize("task,path,value,field", DISAGREEING, ids=[f"{t}-{p}" for t, p, _, _ in DISAGREEING])
def test_sizes_that_disagree_with_the_weights_are_refused(tmp_path, task, path, value, field):
    run, predictor = make(tmp_path, task)
    forge(run, task, meta_edit(path, value))
    message = refused(lambda: predictor.load(run, device="cpu"), "state.json", field)
    assert "model.safetensors" in message


# the name each predictor module builds its model with
BUILDERS = {"lm": (lm_predictor, "LanguageModel"), "tag": (tag_predictor, "build_model"),
            "translate": (translate_predictor, "build_model"), "speech": (speech_predictor, "build_model"),
            "forecast": (forecast_predictor, "Forecaster")}


@pytest.mark.parametrize("task", list(RUNS))
def test_a_model_of_hostile_sizes_is_only_ever_built_on_the_meta_device(tmp_path, monkeypatch, task):
    """hidden_size 60000 is inside every bound; built for real, an LSTM of it is 4 * 60000**2
    floats (57 GB).  Only the dry build on the meta device may happen before the refusal."""
    run, predictor = make(tmp_path, task)
    forge(run, task, meta_edit("model.hidden_size", 60_000))
    module, name = BUILDERS[task]
    real, devices = getattr(module, name), []

    def spy(*args, **kwargs):
        devices.append(torch.empty(0).device.type)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    refused(lambda: predictor.load(run, device="cpu"), "state.json", "task.model.hidden_size")
    assert devices == ["meta"]


def test_task_metadata_that_is_not_an_object(tmp_path):
    run, _ = make(tmp_path, "lm")
    forge(run, "lm", lambda data: data["state"].update(task=[SECRET]))
    refused(lambda: LMPredictor.load(run), "state.json", "task")
    refused(lambda: rnnkit.load(run), str(run))


def test_a_run_of_another_task_does_not_echo_its_task_name(tmp_path):
    run, _ = make(tmp_path, "lm")
    forge(run, "lm", meta_edit("task", SECRET))
    refused(lambda: LMPredictor.load(run), str(run), "not a language-model checkpoint")


@pytest.mark.parametrize("depth", [100, 50_000])
def test_json_nested_deep_is_refused(tmp_path, depth):
    run, _ = make(tmp_path, "lm")
    where = checkpoint_of(run, "lm")
    deep = "[" * depth + "]" * depth
    (where / "state.json").write_text('{"format_version": 2, "state": {"step": 1, "x": ' + deep + "}}")
    ckpt._seal(where)
    message = refused(lambda: read_state(run), "state.json")
    assert "nested deeper than 64 levels" in message
    refused(lambda: LMPredictor.load(run), "state.json")


def test_a_state_json_beyond_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    run, _ = make(tmp_path, "lm")
    where = checkpoint_of(run, "lm")
    with open(where / "state.json", "r+b") as handle:  # sparse: no disk used, and never read
        handle.truncate(record_schema.MAX_JSON_BYTES + 1)
    monkeypatch.setattr(ckpt, "_sha256", lambda path: pytest.fail("a file over the limit was read"))
    message = refused(lambda: read_state(run), "state.json")
    assert "more than the 268435456" in message


@pytest.mark.parametrize("state,field", [
    ({"x": {"__tensor__": [SECRET]}}, "state.x"),
    ({"x": {"__tensor__": "state.optimizer", "y": 1}}, "state.x"),
    ({"x": {"__tensor__": SECRET}}, "state.x"),
    ({"x": {"__int_keys__": True, SECRET: 1}}, "state.x"),
    ({"x": {"__int_keys__": SECRET, "1": 1}}, "state.x.__int_keys__"),
])
def test_malformed_tensor_references_and_integer_keys(tmp_path, state, field):
    run, _ = make(tmp_path, "lm")
    forge(run, "lm", lambda data: data["state"].update(state))
    refused(lambda: read_state(run), "state.json", field)


@pytest.mark.parametrize("top,field", [({"format_version": 2, "state": {}, SECRET: 1}, "<a key of"),
                                       ({"format_version": 2, "state": {}, "averaged_from": [1]}, "averaged_from[0]")])
def test_unknown_or_malformed_top_level_keys(tmp_path, top, field):
    run, _ = make(tmp_path, "lm")
    where = forge(run, "lm", lambda data: None)
    (where / "state.json").write_text(json.dumps(top))
    ckpt._seal(where)
    refused(lambda: read_state(run), "state.json", field)


# ------------------------------------------------------------------------------- 2. format
@pytest.mark.parametrize("version", [True, "2", 2.0, 1.0, None, [2], 10**40])
def test_format_version_must_be_the_integer_1_or_2(tmp_path, version):
    run, _ = make(tmp_path, "lm")
    forge(run, "lm", lambda data: data.update(format_version=version))
    refused(lambda: read_state(run), "state.json", "format" if version == 10**40 else "format_version")
    (checkpoint_of(run, "lm") / CHECKSUMS).unlink()  # nor passes for format 1 without checksums
    refused(lambda: read_state(run), "state.json", "format")


def test_a_format_2_checkpoint_without_checksums_is_refused(tmp_path):
    run, _ = make(tmp_path, "lm")
    (checkpoint_of(run, "lm") / CHECKSUMS).unlink()
    message = refused(lambda: LMPredictor.load(run), CHECKSUMS)
    assert "missing" in message


def test_a_real_format_1_checkpoint_still_loads_and_is_still_checked(tmp_path):
    run, _ = make(tmp_path, "lm")
    where = forge(run, "lm", lambda data: data.update(format_version=1))
    (where / CHECKSUMS).unlink()
    assert isinstance(LMPredictor.load(run), LMPredictor)
    forge(run, "lm", meta_edit("model.hidden_size", 10**12))
    (where / CHECKSUMS).unlink()
    refused(lambda: LMPredictor.load(run), "state.json", "task.model.hidden_size")


def test_a_checksum_file_does_not_echo_its_lines(tmp_path):
    run, _ = make(tmp_path, "lm")
    (checkpoint_of(run, "lm") / CHECKSUMS).write_text(SECRET + "\n")
    refused(lambda: read_state(run), f"{CHECKSUMS}:1")


# ------------------------------------------------------------------------------- 3. links
@pytest.fixture
def secret_file(tmp_path) -> Path:
    """A file outside the run, like /etc/passwd."""
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize("target", ["secret", "/etc/passwd"])
def test_last_as_a_symlink_is_refused_without_reading_it(tmp_path, secret_file, target, capsys):
    run, _ = make(tmp_path, "lm")
    target = secret_file if target == "secret" else Path(target)
    if not target.exists():
        pytest.skip("no /etc/passwd here")
    (run / "checkpoints" / "last").unlink()
    (run / "checkpoints" / "last").symlink_to(target)
    lines = [line for line in target.read_text().splitlines() if line]
    for load in (lambda: read_state(run), lambda: LMPredictor.load(run), lambda: rnnkit.load(run),
                 lambda: Trainer(torch.nn.Linear(1, 1), None, TrainConfig(progress=False), run).resume()):
        message = refused(load, "last", "symbolic link")
        assert not any(line in message for line in lines)
    assert main(["sample", str(run), "--length", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "symbolic link" in err and not any(line in err for line in lines)


@pytest.mark.parametrize("task", ["lm", "forecast"])
@pytest.mark.parametrize("where", ["state.json", "model.safetensors", "extra-entry", "checkpoint-folder",
                                   "checkpoints-folder", "best"])
def test_any_symlink_in_a_checkpoint_or_run_folder_is_refused(tmp_path, secret_file, task, where):
    run, predictor = make(tmp_path, task)
    folder = checkpoint_of(run, task)
    if where in ("state.json", "model.safetensors"):  # a link to a copy of the real file: content alike
        copy = tmp_path / "outside" / where
        copy.write_bytes((folder / where).read_bytes())
        (folder / where).unlink()
        (folder / where).symlink_to(copy)
    elif where == "extra-entry":
        (folder / "notes").symlink_to(secret_file)
    elif where == "checkpoint-folder":  # `last` names a folder that is a link to one elsewhere
        moved = tmp_path / "outside" / "step"
        os.replace(folder, moved)
        folder.symlink_to(moved, target_is_directory=True)
    elif where == "checkpoints-folder":
        moved = tmp_path / "outside" / "checkpoints"
        os.replace(folder.parent, moved)
        folder.parent.symlink_to(moved, target_is_directory=True)
    else:  # best: a link to another run's checkpoint
        other = make(tmp_path / "other", task)[0]
        (folder.parent / "best").symlink_to(checkpoint_of(other, task), target_is_directory=True)
    refused(lambda: predictor.load(run, device="cpu"), str(run), "symbolic link")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_a_file_is_refused_not_waited_on(tmp_path):
    run, _ = make(tmp_path, "lm")
    folder = checkpoint_of(run, "lm")
    (folder / "state.json").unlink()
    os.mkfifo(folder / "state.json")
    refused(lambda: LMPredictor.load(run), "state.json", "not a regular file")


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", ".hidden", "a/b"])
def test_a_checkpoint_name_that_is_a_path_is_refused(tmp_path, name):
    run, _ = make(tmp_path, "lm")
    refused(lambda: LMPredictor.load(run, checkpoint=name), "checkpoints", "plain name")


@pytest.mark.parametrize("key,value,field", [
    ("members", ["../elsewhere"], "members[0]"),
    ("members", ["/etc"], "members[0]"),
    ("members", [], "members"),
    ("members", "members/0", "members"),
    ("series", "../../outside/passwd", "series"),
    ("series", "/etc/passwd", "series"),
])
def test_forecast_record_paths_stay_inside_the_run(tmp_path, key, value, field):
    run, _ = make(tmp_path, "forecast")
    info = json.loads((run / "forecast.json").read_text())
    (run / "forecast.json").write_text(json.dumps({**info, key: value}))
    refused(lambda: ForecastPredictor.load(run), "forecast.json", field)


@pytest.mark.parametrize("linked", ["members", "series"])
def test_forecast_record_paths_through_a_link_are_refused(tmp_path, secret_file, linked):
    run, _ = make(tmp_path, "forecast")
    if linked == "members":
        os.replace(run / "members", tmp_path / "outside" / "members")
        (run / "members").symlink_to(tmp_path / "outside" / "members", target_is_directory=True)
    else:
        (run / "series.csv").symlink_to(secret_file)
        info = json.loads((run / "forecast.json").read_text())
        (run / "forecast.json").write_text(json.dumps({**info, "series": "series.csv"}))
    refused(lambda: ForecastPredictor.load(run), str(run), "symbolic link")


# ------------------------------------------------------------------------------- 4. run records
DEEP = "[" * 50_000 + "]" * 50_000
HOSTILE_RECORDS = [
    ("config.json", "[]", ""),
    ("config.json", json.dumps(SECRET), ""),
    ("config.json", '{"data": {}, "model": {}}', "train"),
    ("config.json", '{"data": {"horizon": "12"}, "model": {}, "train": {}}', "data.horizon"),
    ("config.json", '{"data": {}, "model": {"hidden_size": 1e12}, "train": {}}', "model.hidden_size"),
    ("config.json", '{"data": {}, "model": {"layers": 2}, "train": {}}', "model.layers"),
    ("config.json", '{"data": {}, "model": {}, "train": {"lr": "fast"}}', "train.lr"),
    ("config.json", '{"data": {}, "model": {}, "train": ' + DEEP + "}", "nested deeper"),
    ("config.json", '{"data": {}, "model": {}, "train": {}, "task": 7}', "task"),
    ("config.json", b'{"data": "\xff"}', "not UTF-8"),
    ("forecast.json", "{}", "members"),
    ("forecast.json", '{"members": ["members/0"], "transform": []}', "transform"),
    ("forecast.json", '{"members": ["members/0"], "transform": {"difference": 2}}', "transform"),
    ("forecast.json", '{"members": ["members/0"], "transform": {"profile": ["x"]}}', "transform.profile[0]"),
    ("forecast.json", '{"members": ["members/0"], "transform": {}, "test": {"naive": [1]}}', "test.naive"),
    ("forecast.json", '{"members": ' + DEEP + "}", "nested deeper"),
    ("forecast.json", '{"members": [', "not JSON"),
]


@pytest.mark.parametrize("name,content,field", HOSTILE_RECORDS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(HOSTILE_RECORDS)])
def test_malformed_run_records_are_refused_naming_the_file(tmp_path, name, content, field):
    run, _ = make(tmp_path, "forecast")
    (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(lambda: ForecastPredictor.load(run), name, field)


@pytest.mark.parametrize("name", ["config.json", "forecast.json"])
def test_run_records_that_are_links_missing_or_too_large(tmp_path, secret_file, name):
    run, _ = make(tmp_path, "forecast")
    (run / name).unlink()
    refused(lambda: ForecastPredictor.load(run), name, "not a finished forecast run")
    (run / name).symlink_to(secret_file)
    refused(lambda: ForecastPredictor.load(run), name, "symbolic link")
    (run / name).unlink()
    with open(run / name, "wb") as handle:
        handle.truncate(record_schema.MAX_JSON_BYTES + 1)
    refused(lambda: ForecastPredictor.load(run), name, "bytes, more than")
