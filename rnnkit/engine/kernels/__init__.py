"""Optional compiled kernels behind the explicit-BPTT Functions.

``fused_cpu()`` builds (once, cached by PyTorch's extension builder) and returns the fused
CPU step kernels of ``fused_cpu.cpp``.  Building needs a C++ compiler; without one the
"auto" backend quietly keeps the pure-PyTorch loop, and asking for ``backend="fused"``
raises :class:`KernelUnavailable` with the compiler's complaint.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("fused_cpu.cpp")
_cache: dict[str, object] = {}


class KernelUnavailable(RuntimeError):
    """A compiled kernel was asked for but cannot be built or loaded here."""


def _arch_flags() -> tuple[str, list[str]]:
    """A tag and compiler flags for the vector width this CPU offers (as PyTorch sees it)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "generic", []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        return "avx512", ["-march=x86-64-v4", "-mprefer-vector-width=512"]
    if capability == "AVX2":
        return "avx2", ["-march=x86-64-v3"]
    return "generic", []


def _first_error_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() and "Error building extension" not in line:
            return line
    return lines[0] if lines else type(exc).__name__


def _is_built(name: str) -> bool:
    """Whether a build of ``name`` is already in PyTorch's extension cache (best effort)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, False)).glob(f"{name}*.so"))
    except Exception:
        return False


@functools.lru_cache(maxsize=None)
def _source_digest() -> str:
    """Digest of the kernel source (read once per process)."""
    return hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:12]


def fused_cpu_name() -> str:
    """The name of this machine's build of the fused CPU kernels: vector-width tag, PyTorch
    version (a build is tied to the headers it was made with) and a digest of the source."""
    torch_tag = "".join(ch if ch.isalnum() else "_" for ch in torch.__version__.split("+")[0])
    return f"rnnkit_fused_cpu_{_arch_flags()[0]}_torch{torch_tag}_{_source_digest()}"


def _build_source(name: str) -> Path:
    """A copy of the kernel source inside the build folder of ``name``.  The build compiles
    this copy, so that checkouts of rnnkit at different paths with the same source share one
    build instead of rebuilding each other's (the build files record the source's path)."""
    from torch.utils.cpp_extension import _get_build_directory

    target = Path(_get_build_directory(name, False)) / "fused_cpu.cpp"
    text = _SOURCE.read_bytes()
    if not target.is_file() or target.read_bytes() != text:
        partial = target.with_name(f".fused_cpu.{os.getpid()}.cpp")
        partial.write_bytes(text)
        os.replace(partial, target)  # atomic: a concurrent build never sees half a file
    return target


def fused_cpu_built() -> bool:
    """Whether the fused CPU kernels are already compiled here (no build is started)."""
    return _is_built(fused_cpu_name())


def fused_cpu():
    """The compiled fused CPU kernels (a Python module); raises KernelUnavailable."""
    if "fused_cpu" in _cache:
        module = _cache["fused_cpu"]
        if isinstance(module, KernelUnavailable):
            raise module
        return module
    _, flags = _arch_flags()
    name = fused_cpu_name()
    if not _is_built(name):
        logger.warning(f"rnnkit: compiling the fused CPU kernels ({name}); once per machine, about 30 s")
    try:
        from torch.utils.cpp_extension import load

        module = load(
            name=name,
            sources=[str(_build_source(name))],
            # -fno-trapping-math lets GCC vectorize the polynomial exp (values are unchanged);
            # -fopenmp runs large steps on PyTorch's own OpenMP threads.
            extra_cflags=["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp", *flags],
            extra_ldflags=["-fopenmp"],
            verbose=os.environ.get("RNNKIT_VERBOSE_BUILD") == "1",
        )
    except Exception as exc:  # compiler missing, headers missing, ninja missing, ...
        error = KernelUnavailable(
            "backend='fused' needs rnnkit's CPU kernels, which could not be built "
            f"({_first_error_line(exc)}); use backend='bptt', or install a C++ compiler"
        )
        _cache["fused_cpu"] = error
        raise error from exc
    _cache["fused_cpu"] = module
    return module


def fused_cpu_available() -> bool:
    """Whether the fused CPU kernels can be used (building them on first call)."""
    try:
        fused_cpu()
    except KernelUnavailable:
        return False
    return True
