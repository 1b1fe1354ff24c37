"""Optional compiled kernels behind the explicit-BPTT Functions.

``fused_cpu()`` builds (once per build key) and returns the fused CPU step kernels of
``fused_cpu.cpp``, with PyTorch's extension builder.

One build per key.  The key (:func:`fused_cpu_key`) holds everything that goes into the
compile and link commands or decides whether their output can be loaded: a digest of the
source, every compiler and linker flag (the vector-width flags included), the PyTorch version
and C++ ABI, the compiler (``$CXX`` or ``c++`` as PyTorch calls it, the file it resolves to and
the first line of its ``--version``), and the include and library folders of PyTorch and Python
as the build sees them.  The build's name, and so its folder under PyTorch's extension root,
carries a short digest of the key: processes whose commands differ (another virtual
environment, another compiler) build into different folders instead of rebuilding each
other's, and processes with the same key share one folder, built once.

Concurrent first use.  Each build folder has a lock (``rnnkit.lock``, an ``flock`` that the
operating system releases when its holder exits, however it exits).  The first process takes
it, builds and loads; the others wait for it, then load the finished build without compiling.
PyTorch's own lock file in the folder (``lock``, a plain file that a killed build leaves
behind, on which PyTorch would wait forever) is therefore only ever stale when rnnkit's lock is
free: it is removed with a warning that names it, once the compiler processes that the killed
build may have left running in the folder have ended.  A wait on a live holder is bounded by
``BUILD_WAIT_S``; past it, the kernels count as unavailable and the message names the lock file
and the holder's process id.

Without a C++ compiler (or ninja) nothing is started: backend "auto" warns once, naming what is
missing, and runs "bptt"; ``backend="fused"`` raises :class:`KernelUnavailable` with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("fused_cpu.cpp")
_cache: dict[str, object] = {}
_warned: set[str] = set()

# -fno-trapping-math lets GCC vectorize the polynomial exp (values are unchanged);
# -fopenmp runs large steps on PyTorch's own OpenMP threads.
_CFLAGS = ("-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp")
_LDFLAGS = ("-fopenmp",)

BUILD_TIME = "40 s to 2 minutes on 2 cores"
"""What a build of the kernels takes (measured on a shared 2-core machine: 40 s idle, 50-143 s busy)."""

BUILD_WAIT_S = 900.0
"""How long a process waits for another one that holds the build lock (seconds)."""

LOCK_NAME = "rnnkit.lock"


class KernelUnavailable(RuntimeError):
    """A compiled kernel was asked for but cannot be built or loaded here; ``reason`` says why."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class KernelFallbackWarning(UserWarning):
    """Backend "auto" runs "bptt" because the compiled kernels cannot be used here."""


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


@functools.lru_cache(maxsize=None)
def _source_bytes() -> bytes:
    """The kernel source, read once per process: the key's digest and the build's copy of the
    source are then of the same text."""
    return _SOURCE.read_bytes()


def _source_digest() -> str:
    """Digest of the kernel source."""
    return hashlib.sha256(_source_bytes()).hexdigest()[:12]


def _cxx_command() -> str:
    """The compiler command PyTorch's extension builder writes into its build file."""
    return os.environ.get("CXX") or ("cl" if sys.platform == "win32" else "c++")


@functools.lru_cache(maxsize=16)
def _version_line(argv: tuple[str, ...], mtime_ns: int, size: int) -> str:
    """First line of ``argv --version`` (cached per compiler file, its time and size)."""
    try:
        proc = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({type(exc).__name__})"
    lines = [line.strip() for line in (proc.stdout or proc.stderr).splitlines() if line.strip()]
    return lines[0] if lines else f"? (exit {proc.returncode})"


def _compiler() -> dict:
    """The compiler as the build will run it: the command, the file it resolves to on PATH
    (None when there is none) and the first line of its ``--version``."""
    command = _cxx_command()
    words = shlex.split(command) or [command]
    found = shutil.which(words[0])
    if found is None:
        return {"command": command, "path": None, "version": None}
    path = os.path.realpath(found)
    stat = os.stat(path)
    return {"command": command, "path": path,
            "version": _version_line((path, *words[1:]), stat.st_mtime_ns, stat.st_size)}


def _build_paths() -> dict:
    """Include and library folders of PyTorch and Python as the extension build uses them."""
    from torch.utils import cpp_extension

    try:
        python_include = sysconfig.get_path("include", scheme="nt" if sys.platform == "win32" else "posix_prefix")
    except KeyError:
        python_include = sysconfig.get_path("include")
    return {"torch_include": list(cpp_extension.include_paths()),
            "torch_lib": list(cpp_extension.library_paths()),
            "python_include": python_include}


def fused_cpu_key() -> dict:
    """Everything a build of the fused CPU kernels depends on (see the module docstring).
    Two processes with equal keys share one build; any difference means another build."""
    tag, arch = _arch_flags()
    return {
        "kernel": "fused_cpu",
        "source_sha256": _source_digest(),
        "arch": tag,
        "cflags": [*_CFLAGS, *arch],
        "ldflags": list(_LDFLAGS),
        "compiler": _compiler(),
        "torch": {"version": torch.__version__, "git": getattr(torch.version, "git_version", None),
                  "cxx11_abi": bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", False))},
        "python": {"ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "abiflags": getattr(sys, "abiflags", ""),
                   "cache_tag": sys.implementation.cache_tag},
        "paths": _build_paths(),
        "machine": platform.machine(),
    }


def key_digest(key: dict) -> str:
    """A short digest of a build key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def fused_cpu_name(key: dict | None = None) -> str:
    """The name of the build of the fused CPU kernels for ``key`` (default: this process's):
    vector-width tag and PyTorch version, to read, and the key's digest, to tell builds apart."""
    key = fused_cpu_key() if key is None else key
    torch_tag = "".join(ch if ch.isalnum() else "_" for ch in key["torch"]["version"].split("+")[0])
    return f"rnnkit_fused_cpu_{key['arch']}_torch{torch_tag}_{key_digest(key)}"


def _build_folder(name: str, create: bool = True) -> Path:
    """The build folder of ``name`` under PyTorch's extension root (made if ``create``)."""
    from torch.utils.cpp_extension import _get_build_directory

    if create:
        return Path(_get_build_directory(name, False))
    return Path(_get_build_directory("", False)) / name  # the root alone: nothing made for a mere look


def _is_built(name: str) -> bool:
    """Whether a build of ``name`` is already in PyTorch's extension cache (best effort)."""
    try:
        folder = _build_folder(name, create=False)
        return any(folder.glob(f"{name}*.so")) or any(folder.glob(f"{name}*.pyd"))
    except Exception:
        return False


def _build_source(folder: Path) -> Path:
    """A copy of the kernel source inside the build folder.  The build compiles this copy, so
    that checkouts of rnnkit at different paths with the same key share one build instead of
    rebuilding each other's (the build files record the source's path)."""
    target = folder / "fused_cpu.cpp"
    text = _source_bytes()
    if not target.is_file() or target.read_bytes() != text:
        partial = target.with_name(f".fused_cpu.{os.getpid()}.cpp")
        partial.write_bytes(text)
        os.replace(partial, target)  # atomic: no reader ever sees half a file
    return target


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


@contextlib.contextmanager
def build_lock(folder: Path, wait_s: float | None = None):
    """Hold the build lock of ``folder`` (an flock on ``folder/rnnkit.lock``, released by the
    operating system when this process exits, however it exits).  Waits for a live holder at
    most ``wait_s`` seconds (default ``BUILD_WAIT_S``), then raises KernelUnavailable naming
    the lock file and the holder.  Where flock does not exist (Windows) it holds nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    wait_s = BUILD_WAIT_S if wait_s is None else wait_s
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waited_since = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            now = time.monotonic()
            if waited_since is None:
                waited_since = now
                logger.warning(f"rnnkit: waiting for process {_lock_holder(path)}, which is building the fused CPU "
                               f"kernels in {folder} (lock: {path})")
            elif now - waited_since > wait_s:
                reason = (f"waited {wait_s:.0f} s for the build lock {path}, held by process {_lock_holder(path)}; "
                          "if that process is not building (stopped, hung), end it and retry")
                raise KernelUnavailable(f"backend='fused' needs rnnkit's CPU kernels, but {reason}", reason)
            time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def _processes_in(folder: Path) -> list[int]:
    """Other processes whose working folder is ``folder`` (Linux; elsewhere none are seen)."""
    target = os.path.realpath(folder)
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "cwd") == target:
                        found.append(int(entry.name))
    return found


def _clear_stale_baton(folder: Path, wait_s: float | None = None) -> None:
    """Remove PyTorch's lock file in ``folder`` if one is there: called with the build lock
    held, so the process that made it is gone (killed while building).  Its compiler may still
    be running (ninja starts each command in a process group of its own, which a kill of the
    job does not reach): first wait, at most ``wait_s`` seconds, for the processes still at
    work in the folder, so that two compilers never write the same object file."""
    baton = folder / "lock"
    if not baton.exists():
        return
    wait_s = BUILD_WAIT_S if wait_s is None else wait_s
    left = _processes_in(folder)
    if left:
        logger.warning(f"rnnkit: waiting for processes {left}, left running in {folder} by a build that was stopped")
        deadline = time.monotonic() + wait_s
        while left:
            if time.monotonic() > deadline:
                reason = (f"processes {left} of a stopped build still run in {folder} after {wait_s:.0f} s "
                          f"(its lock file: {baton}); end them and retry")
                raise KernelUnavailable(f"backend='fused' needs rnnkit's CPU kernels, but {reason}", reason)
            time.sleep(0.2)
            left = _processes_in(folder)
    logger.warning(f"rnnkit: removing the stale lock file {baton}, left by a build that was stopped; building again")
    with contextlib.suppress(FileNotFoundError):
        baton.unlink()


def missing_tools() -> str | None:
    """Why no build can start here (no C++ compiler, no ninja), or None."""
    compiler = _compiler()
    if compiler["path"] is None:
        command = compiler["command"]
        if not os.environ.get("CXX"):
            return f"no C++ compiler: {command!r} is not found on PATH (install g++ or clang++, or set CXX)"
        where = "does not exist or is not executable" if os.sep in command else "is not found on PATH"
        return f"no C++ compiler: CXX={command!r} {where}"
    if shutil.which("ninja") is None:
        return "the ninja build tool is not found on PATH (it comes with `pip install ninja`)"
    return None


def fused_cpu_built() -> bool:
    """Whether the fused CPU kernels are already compiled here (no build is started)."""
    return _is_built(fused_cpu_name())


def fused_cpu_state() -> tuple[str, dict, str]:
    """(name, key, state) of this process's build, without building: state is "loaded",
    "built", "not built" or "unavailable: REASON"."""
    key = fused_cpu_key()
    name = fused_cpu_name(key)
    cached = _cache.get("fused_cpu")
    if isinstance(cached, KernelUnavailable):
        return name, key, f"unavailable: {cached.reason}"
    if cached is not None:
        return name, key, "loaded"
    if _is_built(name):
        return name, key, "built"
    missing = missing_tools()
    return name, key, f"unavailable: {missing}" if missing else "not built"


def _unavailable(reason: str) -> KernelUnavailable:
    return KernelUnavailable(f"backend='fused' needs rnnkit's CPU kernels, which cannot be built here ({reason}); "
                             "use backend='bptt' or 'auto', or install a C++ compiler", reason)


def fused_cpu():
    """The compiled fused CPU kernels (a Python module); raises KernelUnavailable."""
    if "fused_cpu" in _cache:
        module = _cache["fused_cpu"]
        if isinstance(module, KernelUnavailable):
            raise module
        return module
    try:
        module = _build_and_load()
    except KernelUnavailable as error:
        _cache["fused_cpu"] = error
        raise
    _cache["fused_cpu"] = module
    return module


def _build_and_load():
    missing = missing_tools()
    if missing:
        raise _unavailable(missing)
    key = fused_cpu_key()
    name = fused_cpu_name(key)
    try:
        folder = _build_folder(name)
    except OSError as exc:
        raise _unavailable(f"cannot create the build folder: {exc}") from exc
    with build_lock(folder):
        _clear_stale_baton(folder)
        started = None if _is_built(name) else time.monotonic()
        if started is not None:
            logger.warning(f"rnnkit: compiling the fused CPU kernels into {folder}; once per build key "
                           f"(compiler, flags, PyTorch), expect {BUILD_TIME}")
        try:
            from torch.utils.cpp_extension import load

            module = load(
                name=name,
                sources=[str(_build_source(folder))],
                extra_cflags=list(key["cflags"]),
                extra_ldflags=list(key["ldflags"]),
                verbose=os.environ.get("RNNKIT_VERBOSE_BUILD") == "1",
            )
        except Exception as exc:  # headers missing, a compile error, ...
            raise _unavailable(f"the build failed: {_first_error_line(exc)}") from exc
        if started is not None:
            logger.warning(f"rnnkit: compiled the fused CPU kernels in {time.monotonic() - started:.0f} s")
            with contextlib.suppress(OSError):
                (folder / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
    return module


def fused_cpu_loaded() -> bool:
    """Whether the fused CPU kernels are loaded in this process already (one dictionary
    lookup: what the per-call paths ask before :func:`fused_cpu_available`)."""
    module = _cache.get("fused_cpu")
    return module is not None and not isinstance(module, KernelUnavailable)


def fused_cpu_available() -> bool:
    """Whether the fused CPU kernels can be used (building them on first call).  If they
    cannot, warns once per process (KernelFallbackWarning): backend "auto" then runs "bptt"."""
    try:
        fused_cpu()
    except KernelUnavailable as exc:
        if exc.reason not in _warned:
            _warned.add(exc.reason)
            warnings.warn(f"rnnkit: the fused CPU kernels are unavailable ({exc.reason}); backend 'auto' runs "
                          "'bptt' instead (the pure-PyTorch explicit BPTT, slower on the CPU). Set RNNKIT_FUSED=0 "
                          "to skip the kernels and this warning.", KernelFallbackWarning, stacklevel=2)
        return False
    return True
