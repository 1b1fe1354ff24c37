import pytest

import rnnkit
from rnnkit.cli import main


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"rnnkit {rnnkit.__version__}" in out
    assert "backends: auto, reference, bptt, fused" in out
    assert "distributed training (torchrun): gloo" in out


def test_info_says_what_auto_runs(capsys, monkeypatch):
    """Each line of the table is choose_stack's answer: the LSTM trains on PyTorch's operator
    at H = 128 and on rnnkit's engine at H >= 256 (the fused kernels' state mocked as built)."""
    from rnnkit.engine import kernels

    build, key, _ = kernels.fused_cpu_state()
    monkeypatch.setattr(kernels, "fused_cpu_state", lambda: (build, key, "built"))
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lstm = next(line for line in lines if line.split()[:2] == ["LSTM", "training"])
    assert lstm.split() == ["LSTM", "training", "B=1:", "native", "fused", "fused", "fused",
                            "B=64:", "native", "fused", "fused", "fused"]
    gru = next(line for line in lines if line.split()[:2] == ["GRU", "forward"])
    assert "native" not in gru


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert rnnkit.__version__ in capsys.readouterr().out


def test_unknown_command_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err
