import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.vocab import SPECIALS, TokenVocab
from rnnkit.errors import RnnkitError
from rnnkit.tasks.translate.pairs import WordTokenizer
from rnnkit.tasks.translate.task import (
    TranslationDataConfig,
    TranslationModelConfig,
    TranslationTask,
    corpus_scores,
    make_batches,
    replace_unknowns,
    translate_ids,
)
from tests.conftest import fit_task

PAIRS = [
    ("I am cold.", "Tengo frío."),
    ("I am hungry.", "Tengo hambre."),
    ("Tom is here.", "Tom está aquí."),
    ("Where is Tom?", "¿Dónde está Tom?"),
    ("I like cats.", "Me gustan los gatos."),
    ("We are tired.", "Estamos cansados."),
    ("Open the door.", "Abre la puerta."),
    ("It is raining.", "Está lloviendo."),
]


def toy_task(model_cfg: TranslationModelConfig) -> TranslationTask:
    tok = WordTokenizer(lower=True)
    src_vocab = TokenVocab.build(tok.tokenize(s) for s, _ in PAIRS)
    tgt_vocab = TokenVocab.build(tok.tokenize(t) for _, t in PAIRS)
    data_cfg = TranslationDataConfig(batch_size=4, eval_bleu=8)
    return TranslationTask({"train": PAIRS, "valid": PAIRS}, tok, tok, src_vocab, tgt_vocab, data_cfg, model_cfg)


def test_batches_are_padded_time_first_and_cover_every_pair():
    task = toy_task(TranslationModelConfig())
    batches = task.train_batches(0)
    assert sum(b[0].shape[1] for b in batches) == len(PAIRS)
    src, src_len, tgt_in, tgt_out = batches[0]
    assert tgt_in[0].eq(TokenVocab.bos).all()
    for b in range(src.shape[1]):  # tgt_out is tgt_in shifted by one, ending in </s>
        n = int((tgt_out[:, b] != 0).sum())
        assert tgt_out[n - 1, b] == TokenVocab.eos
        assert tgt_in[1:n, b].tolist() == tgt_out[: n - 1, b].tolist()
        assert (src[int(src_len[b]):, b] == 0).all()
    assert [b[0].tolist() for b in task.train_batches(1)] == [b[0].tolist() for b in make_batches(
        task.train_ids, 4, seed=1)]


@pytest.mark.parametrize("attention", ["none", "additive"])
def test_tiny_overfit_reaches_exact_matches(attention):
    torch.manual_seed(0)
    cfg = TranslationModelConfig(embed_size=32, hidden_size=48, attention=attention, dropout=0.0,
                                 label_smoothing=0.0, input_feeding=attention != "none")
    task = toy_task(cfg)
    model = task.build_model()
    fit_task(task, model, 1e-2, epochs=60)
    sources = [s for s, _ in PAIRS]
    want = [t.lower() for _, t in PAIRS]
    assert task.translate(model, sources, decoder="greedy") == want
    assert task.translate(model, sources, decoder="beam", beam=3) == want
    metrics = task.evaluate(model, "valid")
    assert metrics["bleu"] == pytest.approx(100.0) and metrics["loss"] < 0.05


def test_replace_unknowns_takes_the_most_attended_source_word():
    vocab = TokenVocab(list(SPECIALS) + ["la", "casa"])
    source = ["the", "xylophone", "tom"]
    ids = [4, TokenVocab.unk, TokenVocab.unk, TokenVocab.bos, TokenVocab.eos, TokenVocab.unk]
    attention = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [1, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert replace_unknowns(ids, attention, source, vocab) == ["la", "xylophone", "tom"]  # stops at </s>
    assert replace_unknowns(ids, attention, source, vocab, {"xylophone": "xilófono", "the": "la"}) == \
        ["la", "xilófono", "tom"]
    assert vocab.decode(ids) == ["la", "<unk>", "<unk>"]


def test_translate_replaces_every_unknown_output():
    """Targets without "tom" in the vocabulary: the model must write <unk> for it, and the
    replacement gives back a source word in its place."""
    torch.manual_seed(0)
    cfg = TranslationModelConfig(embed_size=32, hidden_size=48, attention="general", dropout=0.0,
                                 label_smoothing=0.0)
    task = toy_task(cfg)
    task.tgt_vocab = TokenVocab([w for w in task.tgt_vocab.itos if w != "tom"])
    task.ids = {split: task.encode_pairs(p) for split, p in task.pairs.items()}
    task.train_ids = task.ids["train"]
    model = task.build_model()
    fit_task(task, model, 1e-2, epochs=60)
    sources = [s for s, t in PAIRS if "Tom" in s]
    plain = task.translate(model, sources, decoder="greedy")
    assert all("<unk>" in out for out in plain)
    copied = task.translate(model, sources, decoder="greedy", unk="copy")
    mapped = task.translate(model, sources, decoder="greedy", unk="lexicon", lexicon={"tom": "TOMÁS"})
    hyps = translate_ids(model, [task.src_vocab.encode(task.src_tok.tokenize(s)) for s in sources], "greedy",
                         with_attention=True)
    for _plain, copy, mapping, (h,), src in zip(plain, copied, mapped, hyps, sources):
        words = task.src_tok.tokenize(src)
        want = replace_unknowns(h.tokens, h.extras, words, task.tgt_vocab)
        assert copy == task.tgt_tok.detokenize(want) and "<unk>" not in copy
        unknown = [t for t, i in enumerate(h.tokens) if i == TokenVocab.unk]
        assert unknown and all(want[t] in words for t in unknown)
        assert mapping == task.tgt_tok.detokenize([w if w != "tom" else "TOMÁS" for w in want])
    with pytest.raises(ValueError, match="unk must be one of none, copy, lexicon"):
        task.translate(model, sources, unk="guess")
    task.lexicon()  # fitted on the training pairs
    assert task.lexicon()["tom"] == "tom" and task.lexicon()["is"] == "está"


def test_unknown_word_replacement_needs_attention():
    task = toy_task(TranslationModelConfig(embed_size=8, hidden_size=8, attention="none"))
    with pytest.raises(RnnkitError, match="needs the attention weights.*use --unk none"):
        task.translate(task.build_model(), ["Tom is here."], unk="copy")


def test_corpus_scores_are_sacrebleu():
    pytest.importorskip("sacrebleu")
    ref = "Me gustan los gatos negros."
    same = corpus_scores([ref], [ref], lowercase=False)
    assert same == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    assert corpus_scores([ref.lower()], [ref], lowercase=True)["bleu"] == pytest.approx(100.0)
    assert corpus_scores([ref.lower()], [ref], lowercase=False)["bleu"] < 100
    assert corpus_scores(["nada"], ["Tengo frío."], lowercase=True)["bleu"] < 1


def test_cli_round_trip(tmp_path, capsys):
    """train translate -> evaluate -> translate (beam, n-best, sampling, attention PNG)."""
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 2), encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", "translate", "--data", str(data), "--run", str(run), "--valid", "2", "--test", "2",
            "--min-count", "1", "--hidden-size", "16", "--embed-size", "8", "--epochs", "2", "--batch-size", "4",
            "--no-progress", "--attention", "additive"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "attention additive" in out and "validation loss" in out
    assert main(args) == 2  # the run exists: refuse unless --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "decoder\tsacreBLEU\tchrF\tpairs\tseconds"
    assert out.splitlines()[1].startswith("greedy\t") and out.splitlines()[2].startswith("beam2\t")
    assert (run / "test_beam2.txt").is_file()
    # width 1 is greedy whatever the length penalty
    assert main(["evaluate", str(run), "--split", "valid", "--beam", "1", "--length-penalty", "1.5"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows[0][0] == "greedy" and rows[1][0] == "beam1" and rows[0][1:3] == rows[1][1:3]
    assert (run / "valid_greedy.txt").read_text() == (run / "valid_beam1.txt").read_text()
    assert main(["evaluate", str(run), "--split", "valid", "--beam", "2", "--coverage", "0.2"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("beam2\t")
    # checkpoint averaging of the two epochs' checkpoints, then evaluating the average
    steps = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert len(steps) == 2
    assert main(["average", str(run), *steps, "--name", "avg"]) == 0
    assert "use --checkpoint avg" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--checkpoint", "avg", "--split", "valid"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("greedy\t")
    assert main(["evaluate", str(run), "--checkpoint", "avg2"]) == 2
    assert "avg2: no such checkpoint" in capsys.readouterr().err
    png = tmp_path / "attention.png"
    assert main(["translate", "Tom is cold.", "I like Tom.", "--run", str(run), "--beam", "3",
                 "--attention-png", str(png)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["translate", "Tom is cold.", "--run", str(run), "--beam", "3", "--n-best", "3",
                 "--length-penalty", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "3"]
    assert main(["translate", "Tom is cold.", "--run", str(run), "--temperature", "1.0", "--seed", "1"]) == 0
    assert main(["translate", "!!!", "--run", str(run)]) == 0  # unknown words still translate
    # unknown-word replacement: the run keeps its IBM Model 1 lexicon from training
    assert (run / "lexicon.json.gz").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--unk", "lexicon"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].startswith("greedy_unk-lexicon\t") and (run / "valid_greedy_unk-lexicon.txt").is_file()
    assert "<unk>" not in (run / "valid_greedy_unk-lexicon.txt").read_text()
    assert main(["translate", "Tom is xylophone.", "--run", str(run), "--unk", "copy", "--n-best", "2"]) == 0
    assert "<unk>" not in capsys.readouterr().out
    (run / "lexicon.json.gz").unlink()
    assert main(["translate", "Tom is cold.", "--run", str(run), "--unk", "lexicon"]) == 2
    assert "lexicon.json.gz is missing" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--split", "valid", "--unk", "lexicon", "--limit", "2"]) == 0
    assert "lexicon: IBM Model 1 on" in capsys.readouterr().out and (run / "lexicon.json.gz").is_file()
    assert main(["translate", "   ", "--run", str(run)]) == 2
    assert "nothing to translate" in capsys.readouterr().err


def test_cli_bad_data_is_one_line(tmp_path, capsys):
    data = tmp_path / "bad.tsv"
    data.write_text("Go.\tVe.\nHi. Hola.\n", encoding="utf-8")
    assert main(["train", "translate", "--data", str(data), "--run", str(tmp_path / "r")]) == 2
    assert "bad.tsv:2: expected 'source<TAB>target'" in capsys.readouterr().err


def test_subword_tokenizer_runs_end_to_end(tmp_path):
    pytest.importorskip("sentencepiece")
    from rnnkit.tasks.translate.run import make_task

    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 3), encoding="utf-8")
    cfg = TranslationDataConfig(data=str(data), tokenizer="subword", subword_vocab=40, valid="2", test="2")
    task = make_task(cfg, TranslationModelConfig(hidden_size=8, embed_size=8), seed=0)
    assert task.src_tok.kind == "subword" and len(task.train_ids) > 0
    assert task.tgt_tok.detokenize(task.tgt_tok.tokenize("Tengo frío.")) == "tengo frío."
    assert len(task.translate(task.build_model(), ["I am cold."], decoder="beam", beam=2)) == 1
