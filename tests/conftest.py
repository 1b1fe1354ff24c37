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


def fit_task(task, model, lr, epochs=None, steps=None):
    """Plain Adam on a task's own batches and ``train_step`` (no Trainer): for ``epochs`` passes,
    or until ``steps`` updates; returns the model."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    done, epoch = 0, 0
    while (epochs is None or epoch < epochs) and (steps is None or done < steps):
        for batch in task.train_batches(epoch):
            loss, _, _ = task.train_step(model, batch, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return model
