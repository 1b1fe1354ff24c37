"""Pooling reads the valid steps only: for every pooling the outputs do not change when the
padding's content does, and attention weights sum to one over the valid steps and are zero
on the padding."""

import pytest
import torch

from rnnkit.tasks.classify.data import Example
from rnnkit.tasks.classify.pooling import (
    POOLINGS,
    AttentionPooling,
    final_states,
    masked_softmax,
    max_pool,
    mean_pool,
    pool,
    valid_mask,
)
from rnnkit.tasks.classify.task import ClassifierModelConfig, ClassifyVocab, build_model, make_batch

LENGTHS = torch.tensor([5, 1, 3, 5])

EXAMPLES = [Example("the film is a joy".split(), "1"), Example(["dull"], "0"),
            Example("not a joy".split(), "0"), Example("a dull , dull film".split(), "0")]


def garbage_padding(out: torch.Tensor, lengths: torch.Tensor, value=None) -> torch.Tensor:
    """``out`` with every step past each sequence's end replaced (random, or ``value``)."""
    pad = ~valid_mask(lengths, out.shape[0])[:, :, None]
    fill = torch.randn_like(out) * 100 if value is None else torch.full_like(out, value)
    return torch.where(pad, fill, out)


def test_valid_mask():
    assert valid_mask(torch.tensor([2, 0, 3]), 3).t().tolist() == [[True, True, False], [False, False, False],
                                                                     [True, True, True]]


@pytest.mark.parametrize("kind", ["max", "mean", "attention"])
@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -1e30])
def test_pooling_functions_ignore_the_padding_content(kind, value):
    out = torch.randn(5, 4, 6, dtype=torch.float64) - 3  # all valid values negative: a max over zeros would win
    attention = AttentionPooling(6, 4).double()
    h_n = torch.randn(2, 4, 3, dtype=torch.float64)
    clean, w_clean = pool(kind, out, h_n, LENGTHS, True, attention)
    dirty, w_dirty = pool(kind, garbage_padding(out, LENGTHS, value), h_n, LENGTHS, True, attention)
    torch.testing.assert_close(dirty, clean, rtol=0, atol=0)
    if kind == "attention":
        torch.testing.assert_close(w_dirty, w_clean, rtol=0, atol=0)
    # and each is what it says over the valid steps alone
    for b, n in enumerate(LENGTHS.tolist()):
        valid = out[:n, b]  # (n, P)
        if kind == "max":
            expected = valid.max(0).values
        elif kind == "mean":
            expected = valid.mean(0)
        else:
            expected = (w_clean[:n, b, None] * valid).sum(0)
        torch.testing.assert_close(clean[b], expected)
    if kind == "max":
        assert (clean < 0).all()


def test_attention_weights_sum_to_one_over_valid_steps_and_are_zero_on_padding():
    attention = AttentionPooling(6, 4)
    out = torch.randn(5, 4, 6)
    _, alpha = attention(garbage_padding(out, LENGTHS), valid_mask(LENGTHS, 5))  # (T, B)
    mask = valid_mask(LENGTHS, 5)
    torch.testing.assert_close(alpha.sum(0), torch.ones(4))
    assert (alpha[~mask] == 0).all() and (alpha[mask] > 0).all()
    assert alpha[0, 1] == 1  # a sentence of one word puts all its weight there
    scores = torch.randn(5, 4)
    torch.testing.assert_close(masked_softmax(scores, mask)[:3, 2], scores[:3, 2].softmax(0))


def test_final_states_are_the_forward_last_and_the_backward_first_valid_step():
    import rnnkit

    rnn = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 4, 3)
    out, (h_n, _) = rnn(x, lengths=LENGTHS)
    pooled = final_states(h_n, True)  # (B, 8)
    for b, n in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(pooled[b, :4], out[n - 1, b, :4])  # forward: after the last word
        torch.testing.assert_close(pooled[b, 4:], out[0, b, 4:])  # backward: after reading back to the first
    uni = rnnkit.GRU(3, 4)
    out, h_n = uni(x, lengths=LENGTHS)
    torch.testing.assert_close(final_states(h_n, False), out[LENGTHS - 1, torch.arange(4)])
    assert max_pool(out, valid_mask(LENGTHS, 5)).shape == mean_pool(out, valid_mask(LENGTHS, 5)).shape == (4, 4)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell,chars", [("lstm", 0), ("gru", 3)])
def test_the_model_s_outputs_do_not_depend_on_the_padding(pooling, bidirectional, cell, chars):
    vocab = ClassifyVocab.build(EXAMPLES)
    cfg = ClassifierModelConfig(cell=cell, embed_size=5, hidden_size=4, num_layers=2, bidirectional=bidirectional,
                                pooling=pooling, attention_size=3, char_embed=3, char_hidden=chars)
    model = build_model(vocab, cfg).eval()
    batch = make_batch(EXAMPLES, vocab, chars=chars > 0)
    logits, weights = model.scores(batch)
    pad = ~valid_mask(batch.lengths, batch.words.shape[0])
    noisy = batch.words.clone()
    noisy[pad] = torch.randint(1, len(vocab.words), (int(pad.sum()),))  # real words where the padding was
    again, weights_again = model.scores(batch, noisy)
    torch.testing.assert_close(again, logits, rtol=0, atol=0)
    # each text alone (no padding at all) scores the same as in the batch
    for b, example in enumerate(EXAMPLES):
        alone, _ = model.scores(make_batch([example], vocab, chars=chars > 0))
        torch.testing.assert_close(alone[0], logits[b], rtol=1e-5, atol=1e-6)
    # the training objective too (adversarial perturbation, sized by each text's valid words;
    # the language model's targets): the same loss, and each text's perturbation as alone
    model.cfg.adversarial, model.cfg.lm_weight = 0.1, 0.0 if bidirectional else 0.5
    model.lm_heads = None if bidirectional else torch.nn.ModuleList([torch.nn.Linear(4, 7)])
    batch.labels = torch.arange(len(EXAMPLES)) % 2
    loss, _ = model(batch, objective=True)
    torch.testing.assert_close(model(batch, noisy, objective=True)[0], loss, rtol=0, atol=0)
    x = model.features(batch)
    r = model.perturbation(batch, x, model.read(batch, x)[0])
    for b, example in enumerate(EXAMPLES):
        alone = make_batch([example], vocab, chars=chars > 0)
        alone.labels = batch.labels[b:b + 1]
        x_alone = model.features(alone)
        r_alone = model.perturbation(alone, x_alone, model.read(alone, x_alone)[0])
        torch.testing.assert_close(r_alone[:, 0], r[: len(example), b], rtol=1e-4, atol=1e-7)
        assert (r[len(example):, b] == 0).all()
    if pooling == "attention":
        torch.testing.assert_close(weights_again, weights, rtol=0, atol=0)
        torch.testing.assert_close(weights.sum(0), torch.ones(len(EXAMPLES)))
        assert (weights[pad] == 0).all()
    else:
        assert weights is None
