"""rnnkit's import stays light: no torch._dynamo (nor Triton) until a compiler is used, while
the fused kernels' availability is still a constant to torch.compile."""

import subprocess
import sys

import torch

from rnnkit.engine import layer


def test_fused_ready_carries_the_mark_torch_compiler_sets():
    def probe(explicit: bool) -> bool:
        return True

    marked = torch.compiler.assume_constant_result(probe)
    marks = {name: value for name, value in vars(marked).items() if name.startswith("_dynamo")}
    assert marks, "PyTorch's assume_constant_result set no mark this test knows to compare"
    assert {name: getattr(layer._fused_ready, name, None) for name in marks} == marks


def test_import_rnnkit_loads_no_compiler():
    code = "import sys, rnnkit; print('torch._dynamo' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]
