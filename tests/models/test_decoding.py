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
