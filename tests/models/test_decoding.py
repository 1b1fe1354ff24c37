import math

import pytest
import torch

from rnnkit.models.decoding import filter_logits, sample_next


def test_top_k_keeps_the_k_best():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isinf(out[0, [0, 3]]).all() and torch.isfinite(out[0, [1, 2]]).all()


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_logits(probs.log(), top_p=0.8)
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()
    out = filter_logits(probs.log(), top_p=0.81)
    assert torch.isfinite(out[0, :3]).all() and torch.isinf(out[0, 3])


def test_temperature_zero_is_greedy_and_sampling_follows_probabilities():
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    assert sample_next(logits, temperature=0).item() == 1
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, generator=gen) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0], 0), atol=0.03, rtol=0)


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        filter_logits(torch.zeros(1, 3), top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        filter_logits(torch.zeros(1, 3), top_p=1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_next(torch.zeros(1, 3), temperature=-1)


# ------------------------------------------------------------------ sequence search
import itertools  # noqa: E402

from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.models.decoding import (  # noqa: E402
    beam_search,
    greedy_search,
    length_penalty,
    sample_search,
    select_rows,
)
from rnnkit.models.seq2seq import Seq2Seq  # noqa: E402
from rnnkit.tasks.translate.task import coverage_penalty, max_output_length, translate_ids  # noqa: E402

BOS, EOS = 2, 3


def tiny_model(V=5, attention="general", seed=0):
    torch.manual_seed(seed)
    model = Seq2Seq(7, V, "gru", embed_size=4, hidden_size=5, bidirectional=True, attention=attention,
                    input_feeding=attention != "none").double().eval()
    for p in model.out.parameters():  # sharper distributions: the search order matters
        p.data.mul_(4)
    src = torch.tensor([[4, 5], [6, 4], [5, 0]])  # (S, B)
    return model, src, torch.tensor([3, 2])


def step_of(model, record=False):
    def step(tokens, state):
        logits, state, w = model.decode_step(tokens, state)
        return logits, state, w if record else None
    return step


@torch.no_grad()
def sequence_log_prob(model, src, src_len, b, seq):
    state = model.encode(src[:, b:b + 1], src_len[b:b + 1])
    tokens, total = torch.tensor([BOS]), 0.0
    for tok in seq:
        logits, state, _ = model.decode_step(tokens, state)
        total += float(torch.log_softmax(logits, -1)[0, tok])
        tokens = torch.tensor([tok])
    return total


@pytest.mark.parametrize("attention", ["none", "additive"])
def test_beam_of_width_one_is_greedy(attention):
    model, src, src_len = tiny_model(V=9, attention=attention)
    for max_len in (1, 4, 12):
        greedy = greedy_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, max_len)
        beam = beam_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, max_len, beam=1)
        for g, b in zip(greedy, beam):
            assert g.tokens == b[0].tokens
            assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_best_of_all_enumerated_outputs(alpha):
    """V = 5 tokens, at most 3 steps: every possible output is scored; a beam as wide as the
    number of outputs must return them all, best first, and a narrow beam's best must be one
    of them with its true score."""
    V, max_len = 5, 3
    model, src, src_len = tiny_model(V)
    outputs = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1] or (n < max_len and seq[-1] != EOS):
                continue
            outputs.append(list(seq))
    for b in range(2):
        scored = sorted(((sequence_log_prob(model, src, src_len, b, s) / length_penalty(len(s), alpha), s)
                         for s in outputs), key=lambda x: -x[0])
        found = beam_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, max_len,
                            beam=len(outputs), alpha=alpha, n_best=5)[b]
        assert [h.tokens for h in found] == [s for _, s in scored[:5]]
        assert [h.score for h in found] == pytest.approx([s for s, _ in scored[:5]], abs=1e-9)
        narrow = beam_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, max_len, beam=3,
                             alpha=alpha)[b][0]
        assert narrow.log_prob == pytest.approx(sequence_log_prob(model, src, src_len, b, narrow.tokens))


@torch.no_grad()
def sequence_attention(model, src, src_len, b, seq):
    """(T, S) attention weights of teacher-forcing ``seq`` (padding columns cut)."""
    state = model.encode(src[:, b:b + 1], src_len[b:b + 1])
    tokens, rows = torch.tensor([BOS]), []
    for tok in seq:
        _, state, weights = model.decode_step(tokens, state)
        rows.append(weights[0, : int(src_len[b])])
        tokens = torch.tensor([tok])
    return torch.stack(rows)


def test_coverage_penalty_is_gnmt_eq_14():
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.0, 0.9, 0.1]])
    want = 0.4 * (math.log(1.0) + math.log(1.0) + math.log(0.3))  # column sums 1.3, 1.4, 0.3
    assert coverage_penalty(weights, 0.4) == pytest.approx(want)
    assert coverage_penalty(torch.tensor([[1.0, 0.0]]), 1.0) == pytest.approx(math.log(1e-10))


def test_beam_search_with_coverage_finds_the_best_of_all_enumerated_outputs():
    """As above, the score now log p / lp + the coverage penalty of each output's attention."""
    V, max_len, alpha, beta = 5, 3, 0.6, 2.0
    model, src, src_len = tiny_model(V)
    outputs = [list(seq) for n in range(1, max_len + 1) for seq in itertools.product(range(V), repeat=n)
               if EOS not in seq[:-1] and (n == max_len or seq[-1] == EOS)]
    lengths = src_len.tolist()
    found = beam_search(step_of(model, record=True), model.encode(src, src_len), 2, BOS, EOS, max_len,
                        beam=len(outputs), alpha=alpha, n_best=5,
                        rescore=lambda b, w: coverage_penalty(w[:, : lengths[b]], beta))
    plain = beam_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, max_len, beam=len(outputs),
                        alpha=alpha, n_best=5)
    for b in range(2):
        scored = sorted(((sequence_log_prob(model, src, src_len, b, s) / length_penalty(len(s), alpha)
                          + coverage_penalty(sequence_attention(model, src, src_len, b, s), beta), s)
                         for s in outputs), key=lambda x: -x[0])
        assert [h.tokens for h in found[b]] == [s for _, s in scored[:5]]
        assert [h.score for h in found[b]] == pytest.approx([s for s, _ in scored[:5]], abs=1e-9)
        assert [h.tokens for h in found[b]] != [h.tokens for h in plain[b]]  # the penalty changed the order
    # translate_ids: the same search (its length limit, 2 S + 10) on sources batched by length
    sources = [src[: lengths[b], b].tolist() for b in range(2)]
    via_task = translate_ids(model, sources, "beam", beam=4, alpha=alpha, n_best=4, coverage=beta)
    direct = beam_search(step_of(model, record=True), model.encode(src, src_len), 2, BOS, EOS,
                         max_output_length(max(lengths)), beam=4, alpha=alpha, n_best=4,
                         rescore=lambda b, w: coverage_penalty(w[:, : lengths[b]], beta))
    for b in range(2):
        assert [h.tokens for h in via_task[b]] == [h.tokens for h in direct[b]]
        assert [h.score for h in via_task[b]] == pytest.approx([h.score for h in direct[b]], abs=1e-9)


def test_bad_coverage_arguments():
    model, src, _ = tiny_model()
    with pytest.raises(ValueError, match="coverage must be >= 0, got -0.5"):
        translate_ids(model, [[4, 5]], "beam", coverage=-0.5)
    with pytest.raises(ValueError, match="decoder 'greedy' has none"):
        translate_ids(model, [[4, 5]], "greedy", coverage=0.5)
    plain, _, _ = tiny_model(attention="none")
    with pytest.raises(RnnkitError, match="needs attention weights"):
        translate_ids(plain, [[4, 5]], "beam", coverage=0.5)


def test_n_best_are_distinct_and_ordered_and_attention_is_recorded():
    model, src, src_len = tiny_model(V=12)
    hyps = beam_search(step_of(model, record=True), model.encode(src, src_len), 2, BOS, EOS, 10, beam=4,
                       alpha=0.6, n_best=4)
    for per_input in hyps:
        assert len({tuple(h.tokens) for h in per_input}) == len(per_input) == 4
        scores = [h.score for h in per_input]
        assert scores == sorted(scores, reverse=True)
        for h in per_input:
            assert h.extras.shape == (len(h.tokens), 3)  # (T, S): one attention row per output token


def test_sampling_at_temperature_zero_is_greedy_and_follows_a_seed():
    model, src, src_len = tiny_model(V=9)
    greedy = greedy_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, 8)
    cold = sample_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, 8, temperature=0.0)
    assert [h.tokens for h in greedy] == [h.tokens for h in cold]
    draws = [sample_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, 8, temperature=1.0,
                           top_k=3, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert [h.tokens for h in draws[0]] == [h.tokens for h in draws[1]]


def test_select_rows_reorders_nested_state():
    state = {"h": (torch.arange(3)[:, None], torch.arange(3) * 10), "feed": None}
    out = select_rows(state, torch.tensor([2, 2, 0]))
    assert out["h"][0].flatten().tolist() == [2, 2, 0] and out["h"][1].tolist() == [20, 20, 0]
    assert out["feed"] is None


def test_bad_search_arguments():
    model, src, src_len = tiny_model()
    with pytest.raises(ValueError, match="need 1 <= n_best <= beam, got beam 2 and n_best 3"):
        beam_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, 5, beam=2, n_best=3)
    with pytest.raises(ValueError, match="max_len must be >= 1, got 0"):
        greedy_search(step_of(model), model.encode(src, src_len), 2, BOS, EOS, 0)
