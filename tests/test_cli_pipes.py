"""``rnnkit info | head -1``: a reader that goes away early ends the command quietly."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_info_into_a_closed_pipe_exits_quietly():
    process = subprocess.Popen([sys.executable, "-m", "rnnkit", "info"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before rnnkit writes (it imports torch first)
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, err
    assert err == ""
