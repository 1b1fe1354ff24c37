"""The classifier and its Trainer adapter: the bidirectional gain on a label decided by the
first word of long sentences, word dropout, batching, metrics."""

import random

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.vocab import TokenVocab
from rnnkit.tasks.classify.data import Example
from rnnkit.tasks.classify.metrics import classification_metrics
from rnnkit.tasks.classify.task import (
    IGNORE,
    ClassifierModelConfig,
    ClassifyDataConfig,
    ClassifyTask,
    ClassifyVocab,
    budget_batches,
    build_model,
    clip_words,
    make_batch,
)
from tests.conftest import fit_task


def first_word_sentences(n: int, seed: int, length: int = 60) -> list[Example]:
    """Sentences of ``length - 10`` to ``length`` words whose label is their FIRST word (A or
    B); the other words are drawn from 20 fillers and A and B themselves, so the last words say
    nothing and a model must carry the first word across the whole sentence."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(20)] + ["A", "B"]
    out = []
    for _ in range(n):
        first = rng.choice("AB")
        out.append(Example([first] + [rng.choice(words) for _ in range(rng.randint(length - 10, length) - 1)],
                           first.lower()))
    return out


def first_word_accuracy(bidirectional: bool, steps: int, seed: int = 0, length: int = 60, hidden: int = 16) -> float:
    """Validation accuracy of a final-state classifier trained ``steps`` Adam steps on the
    first-word task."""
    torch.manual_seed(seed)
    examples = {"train": first_word_sentences(2000, seed, length), "valid": first_word_sentences(300, 100 + seed,
                                                                                                   length)}
    task = ClassifyTask(examples, ClassifyVocab.build(examples["train"]), ClassifyDataConfig(word_dropout=0.0),
                        ClassifierModelConfig(embed_size=8, hidden_size=hidden, pooling="final",
                                              bidirectional=bidirectional, embed_dropout=0.0, dropout=0.0), seed)
    model = fit_task(task, task.build_model(), lr=1e-2, steps=steps)
    return task.evaluate(model, "valid")["acc"]


def test_the_bidirectional_final_state_reads_the_first_word_of_long_sentences():
    """The backward direction's final state has just read the first word; the forward one has
    to carry it across 50-60 steps, which a few hundred steps of training do not teach."""
    assert first_word_accuracy(bidirectional=True, steps=300) > 0.95
    assert first_word_accuracy(bidirectional=False, steps=300) < 0.70


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_bidirectional_gain_holds_over_seeds_and_longer_training(seed):
    assert first_word_accuracy(bidirectional=True, steps=400, seed=seed, length=100, hidden=32) > 0.95
    assert first_word_accuracy(bidirectional=False, steps=1500, seed=seed, length=100, hidden=32) < 0.70


def test_word_dropout_replaces_words_by_unk_in_training_only():
    examples = {"train": [Example(["a", "b", "c", "d"] * 10, "x"), Example(["a"], "y")] * 8,
                "valid": [Example(["a", "b"], "x")]}
    vocab = ClassifyVocab.build(examples["train"])
    task = ClassifyTask(examples, vocab, ClassifyDataConfig(word_dropout=0.5, batch_size=16),
                        ClassifierModelConfig(embed_size=4, hidden_size=3), seed=0)
    model = task.build_model()
    seen = []
    model.word_embedding.register_forward_hook(lambda module, args, out: seen.append(args[0]))  # the word ids
    loss, n, state = task.train_step(model, list(range(16)), None)
    assert n == 16 and state is None and loss.requires_grad
    words = seen[-1]
    batch = make_batch(examples["train"][:16], vocab)
    dropped = (words == TokenVocab.unk) & (batch.words != TokenVocab.unk)
    assert 0.3 < dropped.sum() / (batch.words != TokenVocab.pad).sum() < 0.7
    assert ((words == TokenVocab.pad) == (batch.words == TokenVocab.pad)).all()  # padding stays padding
    task.evaluate(model, "valid")
    assert seen[-1].t().tolist() == [vocab.words.encode(["a", "b"])]  # evaluation reads the words as they are


def test_batches_and_labels():
    examples = [Example(["The", "Film"], "pos"), Example(["a"], None), Example(["dull"], "other")]
    vocab = ClassifyVocab.build([Example(["the", "film"], "pos"), Example(["dull"], "neg")])
    batch = make_batch(examples, vocab, chars=True)
    assert batch.words.shape == (2, 3) and batch.lengths.tolist() == [2, 1, 1]
    assert batch.labels.tolist() == [vocab.label_ids["pos"], IGNORE, IGNORE]  # none, or not a training label
    assert batch.words[:, 0].tolist() == vocab.words.encode(["the", "film"])  # lower-cased for the embedding
    assert batch.chars.shape[1] == 4 and batch.index[:, 0].tolist() == [0, 1]  # characters keep the case
    assert list(budget_batches([5, 1, 3, 2, 4], max_texts=2, max_words=7)) == [[1, 3], [2], [4], [0]]
    huge = make_batch([Example(["x" * 40 + "y" * 40])], vocab, chars=True)
    assert huge.char_lengths.tolist() == [64]  # a very long word's characters: its first and last 32
    assert clip_words(examples, 1)[1] == 1 and clip_words(examples, 1)[0][0].words == ["The"]
    assert ClassifyVocab.from_dict(vocab.to_dict()).to_dict() == vocab.to_dict()


def test_metrics():
    labels = ["a", "b", "c"]
    m = classification_metrics(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"], labels)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert m["per_class"]["a"] == {"support": 2, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)  # "c": neither gold nor predicted
    assert classification_metrics(["a"], ["c"], labels)["macro_f1"] == 0.0


def test_adversarial_training_moves_each_text_s_features_along_its_loss_gradient():
    """Miyato et al. (2017): x + r with r = eps ||x|| g / ||g|| per text, g the gradient of the
    clean loss with respect to the features (here from autograd on a leaf copy), r a constant."""
    torch.manual_seed(0)
    examples = first_word_sentences(5, 0, length=12)
    vocab = ClassifyVocab.build(examples)
    cfg = ClassifierModelConfig(embed_size=6, hidden_size=5, pooling="max", embed_dropout=0.0, dropout=0.0,
                                char_hidden=3, char_embed=3, adversarial=0.05)
    model = build_model(vocab, cfg).double().eval()
    batch = make_batch(examples, vocab, chars=True)
    x = model.features(batch).detach().requires_grad_()  # (T, B, F)
    clean = model.read(batch, x)[0]
    F.cross_entropy(clean, batch.labels, reduction="sum").backward(retain_graph=True)
    expected = torch.zeros_like(x)
    for b, n in enumerate(batch.lengths.tolist()):
        assert (x.grad[n:, b] == 0).all() and (x.grad[:n, b] != 0).any()  # padding has no gradient
        expected[:n, b] = 0.05 * x[:n, b].detach().norm() * x.grad[:n, b] / x.grad[:, b].norm()
    r = model.perturbation(batch, x, clean)
    assert not r.requires_grad
    torch.testing.assert_close(r, expected)
    # it raises each text's loss by about eps ||x|| ||g|| (first order, a small eps)
    model.cfg.adversarial = 1e-6
    moved = model.read(batch, x.detach() + model.perturbation(batch, x, clean))[0]
    rise = (F.cross_entropy(moved, batch.labels, reduction="none")
            - F.cross_entropy(clean, batch.labels, reduction="none"))
    norms = torch.stack([x[:n, b].detach().norm() * x.grad[:, b].norm() for b, n in enumerate(batch.lengths.tolist())])
    torch.testing.assert_close(rise, 1e-6 * norms, rtol=1e-3, atol=0)
    # the training loss: clean + perturbed cross-entropy, with no gradient through r
    model.cfg.adversarial = 0.05
    task = ClassifyTask({"train": examples}, vocab, ClassifyDataConfig(word_dropout=0.0), cfg)
    loss, count, _ = task.train_step(model, list(range(len(examples))), None)
    assert count == len(examples)
    features = model.features(batch)
    want = (F.cross_entropy(model.read(batch, features)[0], batch.labels)
            + F.cross_entropy(model.read(batch, features + expected)[0], batch.labels))
    torch.testing.assert_close(loss, want)
    for got, grad in zip(torch.autograd.grad(loss, list(model.parameters())),
                         torch.autograd.grad(want, list(model.parameters()))):
        torch.testing.assert_close(got, grad)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_auxiliary_language_model_predicts_the_next_and_the_previous_word(bidirectional):
    """Rei (2017): the forward state after word t predicts word t+1 (</s> after the last), the
    backward state at t the word t-1 (<s> before the first); words past lm_vocab as <unk>.
    The oracle: one text and one position at a time."""
    torch.manual_seed(0)
    examples = [Example("a b c a d".split(), "x"), Example("c c".split(), "y"), Example("e".split(), "x")]
    vocab = ClassifyVocab.build(examples)  # <pad> <unk> <s> </s> then a c b d e (most frequent first)
    cfg = ClassifierModelConfig(embed_size=4, hidden_size=3, pooling="mean", bidirectional=bidirectional,
                                embed_dropout=0.0, dropout=0.0, lm_weight=0.3, lm_vocab=7)
    model = build_model(vocab, cfg).double().eval()
    batch = make_batch(examples, vocab)
    logits, _, out = model.read(batch, model.features(batch))
    texts = []  # each text's mean cross-entropy of each direction
    for b, e in enumerate(examples):
        ids = [i if i < 7 else TokenVocab.unk for i in vocab.words.encode(e.words)]
        forward, backward = [], []
        for t in range(len(ids)):
            nxt = ids[t + 1] if t + 1 < len(ids) else TokenVocab.eos
            forward.append(F.cross_entropy(model.lm_heads[0](out[t, b, :3]), torch.tensor(nxt)))
            if bidirectional:
                prev = ids[t - 1] if t > 0 else TokenVocab.bos
                backward.append(F.cross_entropy(model.lm_heads[1](out[t, b, 3:]), torch.tensor(prev)))
        texts.append(sum(torch.stack(terms).mean() for terms in (forward, backward) if terms))
    lm = torch.stack(texts).mean()
    torch.testing.assert_close(model.lm_loss(batch, out), lm)
    loss, scores = model(batch, objective=True)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.labels) + 0.3 * lm)
    torch.testing.assert_close(scores, logits)
    if bidirectional:
        with pytest.raises(ValueError, match="lm_weight needs one layer or a unidirectional RNN: above the first"):
            build_model(vocab, ClassifierModelConfig(num_layers=2, lm_weight=0.3))
