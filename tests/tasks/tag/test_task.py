import random
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.vocab import TokenVocab
from rnnkit.tasks.tag.task import (
    IGNORE,
    TaggerModelConfig,
    TaggingDataConfig,
    TaggingTask,
    Vocabularies,
    ensemble_predict,
    make_batch,
    tag_metrics,
)
from rnnkit.tasks.tag.treebank import TaggedSentence, find_treebank, read_conllu
from tests.conftest import fit_task
from tests.files import SHARED_DATA

EWT = SHARED_DATA / "ud_english_ewt"

TAGS = {"a": "A", "b": "B", "c": "C", "d": "D", "the": "DET"}


def context_corpus(n: int, seed: int) -> list[TaggedSentence]:
    """Random sentences over a, b, c, d, the, x, y.  "x" is tagged NEXT-A when the *next*
    word is "a", else NEXT-OTHER (only a model that reads ahead can know); "y" is PREV-THE
    after "the", else PREV-OTHER (a left-to-right model can know)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [rng.choice(["a", "a", "a", "b", "c", "d", "the", "x", "x", "y"]) for _ in range(rng.randint(4, 9))]
        tags = []
        for i, w in enumerate(words):
            if w == "x":
                tags.append("NEXT-A" if i + 1 < len(words) and words[i + 1] == "a" else "NEXT-OTHER")
            elif w == "y":
                tags.append("PREV-THE" if i > 0 and words[i - 1] == "the" else "PREV-OTHER")
            else:
                tags.append(TAGS[w])
        sentences.append(TaggedSentence(words, tags))
    return sentences


def small_task(train, valid, bidirectional=True, crf=False, word_dropout=0.0, seed=0):
    vocab = Vocabularies.build(train)
    model_cfg = TaggerModelConfig(word_embed=16, char_embed=8, char_hidden=8, hidden_size=24, num_layers=1,
                                  bidirectional=bidirectional, dropout=0.0, crf=crf)
    data_cfg = TaggingDataConfig(batch_size=16, word_dropout=word_dropout)
    return TaggingTask({"train": train, "valid": valid}, vocab, data_cfg, model_cfg, seed)


def fit(task, steps, lr=1e-2):
    torch.manual_seed(0)
    return fit_task(task, task.build_model(), lr, steps=steps)


def accuracy_on(task, model, sentences, word):
    predicted = task.predict(model, sentences)
    pairs = [(g, p) for s, tags in zip(sentences, predicted) for w, g, p in zip(s.words, s.tags, tags) if w == word]
    return sum(g == p for g, p in pairs) / len(pairs)


def test_make_batch_indexes_distinct_forms_and_pads_tags():
    train = [TaggedSentence(["The", "dog", "barks"], ["DET", "NOUN", "VERB"]),
             TaggedSentence(["the", "dog"], ["DET", "NOUN"])]
    vocab = Vocabularies.build(train)
    batch = make_batch(train, vocab)
    assert batch.words.shape == batch.tags.shape == batch.index.shape == (3, 2)
    assert batch.lengths.tolist() == [3, 2]
    forms = ["".join(vocab.chars.itos[int(c)] for c in batch.chars[:n, u])
             for u, n in enumerate(batch.char_lengths.tolist())]
    assert forms == ["The", "dog", "barks", "the"]  # distinct forms, case kept for characters
    assert [forms[int(i)] for i in batch.index[:2, 1]] == ["the", "dog"]
    assert batch.words[0, 0] == batch.words[0, 1]  # the word embedding sees lower-cased forms
    assert batch.tags[2, 1] == IGNORE
    assert [vocab.tags[int(t)] for t in batch.tags[:, 0]] == ["DET", "NOUN", "VERB"]
    unseen = make_batch([TaggedSentence(["cat"], [])], vocab)
    assert unseen.words[0, 0] == TokenVocab.unk and unseen.tags[0, 0] == IGNORE


@pytest.mark.parametrize("bidirectional, crf", [(True, False), (False, True)])
def test_padded_batch_equals_sentences_one_by_one(bidirectional, crf):
    sentences = context_corpus(6, seed=1)
    task = small_task(sentences, sentences, bidirectional, crf)
    model = task.build_model().eval()
    together = model(make_batch(sentences, task.vocab))
    for b, s in enumerate(sentences):
        alone = model(make_batch([s], task.vocab))
        torch.testing.assert_close(together[: len(s), b], alone[:, 0], rtol=1e-5, atol=1e-6)


def test_word_dropout_rate_is_alpha_over_alpha_plus_count():
    sentences = [TaggedSentence(["a"] * 3 + ["b"], ["A"] * 3 + ["B"]) for _ in range(1)]
    task = small_task(sentences, sentences, word_dropout=1.0)
    ids = task.vocab.words.stoi
    assert task.unk_prob[ids["a"]] == pytest.approx(1 / (1 + 3))
    assert task.unk_prob[ids["b"]] == pytest.approx(1 / (1 + 1))
    assert task.unk_prob[TokenVocab.pad] == 0 and task.unk_prob[TokenVocab.unk] == 0


def test_tag_metrics_by_hand():
    gold = [["A", "B", "C"], ["A"]]
    pred = [["A", "C", "C"], ["B"]]
    oov = [[False, True, True], [True]]
    m = tag_metrics(gold, pred, oov)
    assert m == {"acc": 2 / 4, "oov_acc": 1 / 3, "tokens": 4, "oov_tokens": 3}


def test_backward_direction_is_what_reads_the_right_context():
    """The lecture's point about taggers: a tag that depends on the next word is learned by the
    bidirectional model and cannot be by the left-to-right one (a third of the "x" not at the
    end are followed by "a": it can only guess); both learn the tag that depends on the
    previous word."""
    train, test = context_corpus(400, seed=2), context_corpus(200, seed=3)
    bi, uni = small_task(train, test, True), small_task(train, test, False)
    bi_model, uni_model = fit(bi, 250), fit(uni, 250)
    assert accuracy_on(bi, bi_model, test, "x") > 0.97
    assert accuracy_on(uni, uni_model, test, "x") < 0.8
    assert accuracy_on(bi, bi_model, test, "y") > 0.97
    assert accuracy_on(uni, uni_model, test, "y") > 0.97


def test_ensemble_averages_probabilities_across_vocabularies():
    train_a, train_b, test = context_corpus(60, seed=6), context_corpus(60, seed=7), context_corpus(20, seed=8)
    members = []
    for train, steps in ((train_a, 15), (train_b, 25)):
        task = small_task(train + [TaggedSentence(["zz"], ["EXTRA"])] if steps == 25 else train, test)
        members.append((fit(task, steps), task))
    (model_a, task_a), (model_b, task_b) = members
    assert task_a.vocab.tags != task_b.vocab.tags  # different tag sets: matched by name
    probs_a, probs_b = task_a.probabilities(model_a, test), task_b.probabilities(model_b, test)
    for p in probs_a + probs_b:
        torch.testing.assert_close(p.sum(1), torch.ones(len(p)))
    expected = []
    for pa, pb in zip(probs_a, probs_b):
        avg = {t: (pa[:, task_a.vocab.tags.index(t)] if t in task_a.vocab.tags else 0)
               + pb[:, task_b.vocab.tags.index(t)] for t in task_b.vocab.tags}
        names = list(avg)
        expected.append([names[i] for i in torch.stack([avg[n] for n in names], 1).argmax(1).tolist()])
    assert ensemble_predict(members, test) == expected
    assert ensemble_predict(members[:1], test) == task_a.predict(model_a, test)


def test_crf_tagger_learns_too():
    train, test = context_corpus(300, seed=4), context_corpus(100, seed=5)
    task = small_task(train, test, True, crf=True)
    model = fit(task, 200)
    assert task.evaluate(model, "valid")["acc"] > 0.97


@pytest.mark.skipif(not EWT.is_dir(), reason="../shared/data/ud_english_ewt is absent")
def test_training_on_a_real_slice_beats_the_most_frequent_tag_baseline():
    from collections import Counter

    files = find_treebank(EWT)
    train, valid = read_conllu(files["train"], limit=400), read_conllu(files["valid"], limit=300)
    vocab = Vocabularies.build(train)
    task = TaggingTask({"train": train, "valid": valid}, vocab, TaggingDataConfig(batch_size=16),
                       TaggerModelConfig(word_embed=64, char_embed=32, char_hidden=32, hidden_size=64,
                                         num_layers=1, dropout=0.2), seed=0)
    # baseline: each training word's most frequent tag, the overall most frequent tag otherwise
    by_word: dict = {}
    for s in train:
        for w, t in zip(s.words, s.tags):
            by_word.setdefault(w, Counter())[t] += 1
    overall = Counter(t for s in train for t in s.tags).most_common(1)[0][0]
    guess = [[by_word[w].most_common(1)[0][0] if w in by_word else overall for w in s.words] for s in valid]
    baseline = tag_metrics([s.tags for s in valid], guess, [[False] * len(s) for s in valid])["acc"]
    untrained = task.evaluate(task.build_model(), "valid")["acc"]
    model = fit(task, 75, lr=5e-3)
    metrics = task.evaluate(model, "valid")
    assert untrained < 0.3
    assert metrics["acc"] > baseline + 0.02, (metrics, baseline)
    assert metrics["oov_acc"] > 0.5


def write_treebank(folder: Path, seed: int = 0) -> Path:
    folder.mkdir()
    for split, n in [("train", 200), ("dev", 40), ("test", 40)]:
        lines = []
        for k, s in enumerate(context_corpus(n, seed + len(split))):
            lines.append(f"# sent_id = {split}-{k}")
            lines += [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(zip(s.words, s.tags), 1)]
            lines.append("")
        (folder / f"toy-ud-{split}.conllu").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_cli_train_evaluate_and_tag_round_trip(tmp_path, capsys):
    data = write_treebank(tmp_path / "toy")
    run = tmp_path / "run"
    args = ["train", "tag", "--data", str(data), "--run", str(run), "--epochs", "3", "--hidden-size", "24",
            "--num-layers", "1", "--word-embed", "16", "--char-hidden", "8", "--char-embed", "8",
            "--lr", "0.01", "--batch-size", "16", "--no-progress", "--dropout", "0"]
    assert main(args) == 0
    assert "finished at step 39" in capsys.readouterr().out
    assert main(args) == 2  # the run exists: refuse without --resume
    assert "already holds a run" in capsys.readouterr().err
    assert main(args[:7] + ["4"] + args[8:] + ["--resume"]) == 0  # one more epoch, same vocabularies
    out = capsys.readouterr().out
    assert "resuming from" in out and "finished at step 52" in out
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy > 0.8
    assert (run / "test_confusion.csv").is_file() and (run / "test_confusion.png").is_file()
    predicted = read_conllu(run / "test_predictions.conllu")
    gold = read_conllu(data / "toy-ud-test.conllu")
    assert [s.words for s in predicted] == [s.words for s in gold]
    right = sum(p == g for a, b in zip(predicted, gold) for p, g in zip(a.tags, b.tags))
    assert right / sum(map(len, gold)) == pytest.approx(accuracy, abs=1e-4)
    assert main(["evaluate", str(run), "--split", "test", "--ensemble", str(run)]) == 0  # a run with itself
    out = capsys.readouterr().out
    assert "ensemble of 2 runs" in out and float(out.split("accuracy ")[1].split()[0]) == accuracy

    assert main(["tag", "--run", str(run), "the y a x a.", "B x c"]) == 0
    tagged = tmp_path / "tagged.conllu"
    tagged.write_text(capsys.readouterr().out, encoding="utf-8")
    sentences = read_conllu(tagged)
    assert [s.words for s in sentences] == [["the", "y", "a", "x", "a", "."], ["B", "x", "c"]]
    assert [s.text for s in sentences] == ["the y a x a.", "B x c"]  # the text as given
    text = tmp_path / "in.txt"
    text.write_text("a b\n", encoding="utf-8")
    assert main(["tag", "--run", str(run), "--file", str(text), "--format", "tsv", "--out", str(tmp_path / "o.tsv")]) == 0
    assert (tmp_path / "o.tsv").read_text(encoding="utf-8") == "a\tA\nb\tB\n\n"


def test_cli_bad_input(tmp_path, capsys):
    assert main(["train", "tag", "--data", str(tmp_path / "absent"), "--run", str(tmp_path / "r")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["train", "tag", "--run", str(tmp_path / "r")]) == 2
    assert "needs --data DIR" in capsys.readouterr().err
    assert main(["tag", "--run", str(tmp_path / "r")]) == 2
    assert "give the text to tag" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # refused by the flag's declared choices, before any work
        main(["train", "tag", "--data", str(tmp_path), "--column", "deprel"])
    assert exc.value.code == 2 and "--column: must be one of" in capsys.readouterr().err
