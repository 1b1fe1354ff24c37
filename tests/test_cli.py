import pytest

import rnnkit
from rnnkit.cli import main


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"rnnkit {rnnkit.__version__}" in out
    assert "backends: auto, reference, bptt, fused" in out
    assert "distributed training (torchrun): gloo" in out


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
