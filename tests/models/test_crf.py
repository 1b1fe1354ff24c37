import itertools

import pytest
import torch

from rnnkit.models.crf import CRF


def brute_force(crf, emissions, lengths):
    """Scores of every tag sequence of each item, by enumeration: {b: {seq: score}}."""
    out = {}
    K = crf.num_tags
    for b, n in enumerate(lengths.tolist()):
        scores = {}
        for seq in itertools.product(range(K), repeat=n):
            s = crf.start[seq[0]] + crf.end[seq[-1]] + sum(emissions[t, b, seq[t]] for t in range(n))
            s = s + sum(crf.transitions[seq[t - 1], seq[t]] for t in range(1, n))
            scores[seq] = s
        out[b] = scores
    return out


@pytest.fixture
def setup():
    torch.manual_seed(3)
    K, T = 3, 4
    crf = CRF(K).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(T, 4, K, dtype=torch.float64)
    lengths = torch.tensor([4, 1, 3, 2])
    return crf, emissions, lengths


def test_forward_algorithm_equals_enumeration(setup):
    crf, emissions, lengths = setup
    table = brute_force(crf, emissions, lengths)
    log_z = crf.log_partition(emissions, lengths)
    for b, scores in table.items():
        expected = torch.logsumexp(torch.stack(list(scores.values())), 0)
        torch.testing.assert_close(log_z[b], expected, rtol=1e-12, atol=1e-12)


def test_sequence_score_and_probabilities_sum_to_one(setup):
    crf, emissions, lengths = setup
    table = brute_force(crf, emissions, lengths)
    for b, scores in table.items():
        total = 0.0
        for seq, s in scores.items():
            tags = torch.zeros(emissions.shape[0], emissions.shape[1], dtype=torch.long)
            tags[: len(seq), b] = torch.tensor(seq)
            torch.testing.assert_close(crf.score(emissions, tags, lengths)[b], s, rtol=1e-12, atol=1e-12)
            total += float(torch.exp(-crf.nll(emissions, tags, lengths)[b]).detach())
        assert total == pytest.approx(1.0, abs=1e-10)


def test_viterbi_finds_the_best_sequence(setup):
    crf, emissions, lengths = setup
    table = brute_force(crf, emissions, lengths)
    decoded = crf.decode(emissions, lengths)
    for b, scores in table.items():
        assert tuple(decoded[b]) == max(scores, key=lambda seq: float(scores[seq].detach()))


def test_gradients_match_finite_differences(setup):
    crf, emissions, lengths = setup
    tags = torch.randint(0, 3, emissions.shape[:2])
    emissions.requires_grad_(True)
    torch.autograd.gradcheck(lambda e: crf.nll(e, tags, lengths), (emissions,))


def test_bad_shapes():
    crf = CRF(3)
    with pytest.raises(ValueError, match=r"emissions must be \(T, B, 3\)"):
        crf.log_partition(torch.zeros(2, 2, 4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="lengths must be"):
        crf.log_partition(torch.zeros(2, 2, 3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="num_tags must be >= 1"):
        CRF(0)
