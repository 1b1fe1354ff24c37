"""The NaN/inf input check off the CPU: a device-side assertion, never a host read.

On the CPU ``check_finite`` may read values (``.item()``), since there that costs no wait; on
a GPU each read would make the host wait for the device once per layer call.  These tests
force the device branch on the CPU (``checks._syncs_host``) and count every Python-level read
of a tensor's values while a layer runs forward and backward."""

from __future__ import annotations

import traceback

import pytest
import torch

import rnnkit
from rnnkit.models import checks

# Tensor methods that hand a value to Python, each a host-device synchronization on a GPU.
READS = ("item", "__bool__", "tolist", "nonzero", "__int__", "__float__", "__index__",
         "__complex__", "numpy", "cpu")


@pytest.fixture
def device_branch(monkeypatch):
    """Make check_finite take its device branch although the tensors are on the CPU."""
    monkeypatch.setattr(checks, "_syncs_host", lambda value: True)


@pytest.fixture
def reads(monkeypatch):
    """A list that receives (method, innermost function names) for every value read."""
    seen = []

    def counting(name, original):
        def read(self, *args, **kwargs):
            frames = [frame.name for frame in traceback.extract_stack()[:-1]]
            seen.append((name, frames))
            return original(self, *args, **kwargs)
        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return seen


def _train_step(layer, x, state=None, lengths=None):
    out, (h, c) = layer(x, state, lengths=lengths)
    (out.square().sum() + h.sum() + c.sum()).backward()


def _fresh():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, backend="bptt")
    x = torch.randn(6, 2, 3, requires_grad=True)
    state = (torch.zeros(4, 2, 4), torch.zeros(4, 2, 4))
    return layer, x, state


def test_the_device_branch_reads_no_value_in_a_whole_training_step(device_branch, reads):
    layer, x, state = _fresh()
    _train_step(layer, x, state)
    with torch.no_grad():
        layer(x)
    cell = rnnkit.LSTMCell(3, 4)
    cell(x[0].detach(), (state[0][0], state[1][0]))
    # Not only check_finite: with lengths=None nothing on the layer's Python path reads a value.
    assert [(name, frames[-1]) for name, frames in reads] == []


def test_with_lengths_the_check_itself_still_reads_nothing(device_branch, reads):
    layer, x, state = _fresh()
    _train_step(layer, x, state, lengths=torch.tensor([6, 4]))
    # Lengths are CPU tensors (normalize_lengths, Steps.build read them there, which waits for
    # no device); the finite check must add no read of its own.
    assert [name for name, frames in reads if "check_finite" in frames] == []
    assert reads, "the counting mock saw nothing: the patch did not take"


def test_the_cpu_branch_does_read_so_the_count_is_meaningful(reads):
    layer, x, state = _fresh()
    _train_step(layer, x, state)
    assert any("check_finite" in frames for name, frames in reads)


def test_the_device_branch_still_refuses_nan_and_inf(device_branch):
    # On the CPU torch._assert_async raises at once; on CUDA at the next synchronization.
    layer, x, state = _fresh()
    bad = x.detach().clone()
    bad[2, 1, 0] = float("nan")
    with pytest.raises(RuntimeError, match=r"LSTM: input contains NaN or infinity; expected finite "
                                           r"values \(a device-side check: run the same input on the CPU"):
        layer(bad)
    c0 = state[1].clone()
    c0[3, 0, 1] = float("inf")
    with pytest.raises(RuntimeError, match=r"LSTM: c_0 contains NaN or infinity.*RNNKIT_CHECK_FINITE=0"):
        layer(x, (state[0], c0))
    with pytest.raises(RuntimeError, match="GRUCell: input contains NaN or infinity"):
        rnnkit.GRUCell(3, 4)(bad[2])
    layer(x, state)  # finite input passes
    with rnnkit.finite_checks(False):
        layer(bad)  # and the switch still turns the check off


def test_huge_finite_values_pass_the_device_branch(device_branch):
    x = torch.full((3, 1, 3), 3e38)  # the sum overflows; every entry is finite
    rnnkit.RNN(3, 4, backend="bptt")(x)


def test_syncs_host_is_false_only_on_the_cpu():
    assert checks._syncs_host(torch.zeros(1)) is False
    assert checks._syncs_host(torch.zeros(1, device="meta")) is True
