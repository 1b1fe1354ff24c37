import pytest
import torch

# Tolerances of the Core issue: float64 to 1e-10 relative, float32 to 1e-5 relative.
# "Relative" is measured against the tensor's scale (its largest magnitude), as each entry of
# a gradient is a sum over steps and batch whose terms can cancel: an entry near zero carries
# the rounding error of its largest terms, not of its own size.
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close(actual, expected, dtype, what=""):
    rtol = RTOL[dtype]
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-3), msg=lambda m: f"{what}: {m}"
    )
