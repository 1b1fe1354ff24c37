"""The build of the fused CPU kernels: one build per key, a clear fallback without a compiler,
and a lock that neither lets two processes build at once nor hangs on a killed build.

The fast tests never compile (they use a temporary TORCH_EXTENSIONS_DIR and a stand-in for
PyTorch's ``load``); the two that do are marked slow (a build takes 1-2 minutes)."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.engine import kernels
from rnnkit.engine.layer import resolve_backend

ROOT = Path(rnnkit.__file__).resolve().parent.parent


def fake_compiler(folder: Path, version: str) -> Path:
    """An executable that answers --version like a compiler does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "c++"
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process state as before any use of the kernels, and an empty extension root."""
    monkeypatch.setattr(kernels, "_cache", {})
    monkeypatch.setattr(kernels, "_warned", set())
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    return tmp_path


# -- the key and the name


def test_the_name_is_stable_for_one_key():
    assert kernels.fused_cpu_name() == kernels.fused_cpu_name()
    key = kernels.fused_cpu_key()
    assert kernels.fused_cpu_name(json.loads(json.dumps(key))) == kernels.fused_cpu_name()
    assert kernels.key_digest(key) in kernels.fused_cpu_name()


def test_another_process_with_the_same_setup_gets_the_same_name():
    code = "from rnnkit.engine import kernels; print(kernels.fused_cpu_name())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == kernels.fused_cpu_name()


def test_the_name_changes_with_the_flags(monkeypatch):
    before = kernels.fused_cpu_name()
    monkeypatch.setattr(kernels, "_CFLAGS", (*kernels._CFLAGS, "-DNDEBUG"))
    assert kernels.fused_cpu_name() != before
    monkeypatch.setattr(kernels, "_CFLAGS", kernels._CFLAGS[:-1])
    assert kernels.fused_cpu_name() == before
    monkeypatch.setattr(kernels, "_LDFLAGS", ("-fopenmp", "-s"))
    assert kernels.fused_cpu_name() != before


def test_the_name_changes_with_the_arch_flags(monkeypatch):
    tag, flags = kernels._arch_flags()
    before = kernels.fused_cpu_name()
    monkeypatch.setattr(kernels, "_arch_flags", lambda: (tag, [*flags, "-mtune=native"]))
    assert kernels.fused_cpu_name() != before


def test_the_name_changes_with_the_compiler(monkeypatch, tmp_path):
    gcc = fake_compiler(tmp_path / "a", "g++ (GCC) 12.2.0")
    monkeypatch.setenv("CXX", str(gcc))
    first = kernels.fused_cpu_name()
    assert kernels.fused_cpu_name() == first
    other = fake_compiler(tmp_path / "b", "g++ (GCC) 13.1.0")
    monkeypatch.setenv("CXX", str(other))
    assert kernels.fused_cpu_name() != first
    # the same file, upgraded in place: its --version line differs
    time.sleep(0.01)
    fake_compiler(tmp_path / "a", "g++ (GCC) 12.3.0")
    monkeypatch.setenv("CXX", str(gcc))
    assert kernels.fused_cpu_name() != first


def test_the_name_follows_the_compiler_that_path_resolves(monkeypatch, tmp_path):
    """``c++`` is what PyTorch runs when CXX is unset: another c++ first on PATH, another build."""
    monkeypatch.delenv("CXX", raising=False)
    before = kernels.fused_cpu_name()
    fake_compiler(tmp_path, "clang version 17.0.6")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    key = kernels.fused_cpu_key()
    assert key["compiler"] == {"command": "c++", "path": str((tmp_path / "c++").resolve()),
                               "version": "clang version 17.0.6"}
    assert kernels.fused_cpu_name(key) != before


def test_the_name_changes_with_torch_and_the_include_folders(monkeypatch):
    before = kernels.fused_cpu_name()
    monkeypatch.setattr(torch, "__version__", "2.99.0+cpu")
    changed = kernels.fused_cpu_name()
    assert changed != before and "torch2_99_0" in changed
    monkeypatch.undo()
    paths = kernels._build_paths()
    other_venv = {**paths, "torch_include": [p.replace("site-packages", "elsewhere") for p in paths["torch_include"]]}
    monkeypatch.setattr(kernels, "_build_paths", lambda: other_venv)
    assert kernels.fused_cpu_name() != before


# -- no compiler


def test_without_a_compiler_auto_warns_once_and_runs_bptt(fresh, monkeypatch, caplog):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    x = torch.randn(3, 2, 4)
    with caplog.at_level(logging.INFO, logger="rnnkit"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_backend("auto", "LSTM", x) == ("bptt", None)
        rnnkit.LSTM(4, 5)(x)[0].sum().backward()
        assert not kernels.fused_cpu_available()
    fallbacks = [w for w in caught if issubclass(w.category, kernels.KernelFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    message = str(fallbacks[0].message)
    for part in ("/nonexistent/c++", "'bptt'", "RNNKIT_FUSED=0", "slower"):
        assert part in message
    assert "compiling" not in caplog.text
    with pytest.raises(kernels.KernelUnavailable, match="no C.. compiler: CXX='/nonexistent/c..' does not exist") as exc:
        kernels.fused_cpu()
    assert "/nonexistent/c++" in exc.value.reason
    with pytest.raises(kernels.KernelUnavailable, match="no C.. compiler"):
        resolve_backend("fused", "LSTM", x)


def test_without_a_compiler_on_path(fresh, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(fresh / "empty"))
    assert kernels.missing_tools() == "no C++ compiler: 'c++' is not found on PATH (install g++ or clang++, or set CXX)"
    with pytest.warns(kernels.KernelFallbackWarning, match="'c\\+\\+'"):
        assert not kernels.fused_cpu_available()


def test_without_ninja(fresh, monkeypatch):
    fake_compiler(fresh / "bin", "g++ (GCC) 12.2.0")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(fresh / "bin"))
    assert "ninja" in kernels.missing_tools()
    with pytest.raises(kernels.KernelUnavailable, match="ninja"):
        kernels.fused_cpu()


def test_rnnkit_info_shows_the_build_and_its_state(fresh, monkeypatch):
    from rnnkit.cli import info

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    text = info()
    assert f"build: {kernels.fused_cpu_name()}" in text
    assert "fused CPU kernels: unavailable: no C++ compiler" in text
    assert "compiler: /nonexistent/c++ (not found)" in text
    assert not (fresh / "ext" / kernels.fused_cpu_name()).exists()  # a look makes no build folder


# -- when the build message appears, and the lock


class FakeLoad:
    """Stands in for torch's ``load``: records its calls and 'builds' a .so file."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, sources, **kwargs):
        self.calls.append((name, sources, kwargs))
        folder = Path(sources[0]).parent
        assert not (folder / "lock").exists(), "the stale lock file must be gone before torch looks"
        (folder / f"{name}.so").write_bytes(b"")
        return "module"


def test_the_build_message_comes_only_when_a_build_starts(fresh, monkeypatch, caplog):
    import torch.utils.cpp_extension as cpp_extension

    load = FakeLoad()
    monkeypatch.setattr(cpp_extension, "load", load)
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert kernels.fused_cpu() == "module"
    assert "compiling the fused CPU kernels" in caplog.text and kernels.BUILD_TIME in caplog.text
    assert "about 30 s" not in caplog.text
    (name, sources, options), = load.calls
    assert name == kernels.fused_cpu_name()
    assert options["extra_cflags"] == [*kernels._CFLAGS, *kernels._arch_flags()[1]]
    folder = Path(sources[0]).parent
    assert folder.name == name and Path(sources[0]).read_bytes() == kernels._SOURCE.read_bytes()
    assert json.loads((folder / "key.json").read_text())["source_sha256"] == kernels._source_digest()
    # a second process (fresh cache) finds the build: loads it, no message
    caplog.clear()
    monkeypatch.setattr(kernels, "_cache", {})
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert kernels.fused_cpu() == "module"
    assert "compiling" not in caplog.text and len(load.calls) == 2


def test_a_stale_torch_lock_file_is_removed_with_a_message(fresh, monkeypatch, caplog):
    """PyTorch's own lock file, left by a build that was killed, would make PyTorch wait
    forever; under rnnkit's lock it is known to be stale."""
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "load", FakeLoad())
    folder = kernels._build_folder(kernels.fused_cpu_name())
    (folder / "lock").write_text("")
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert kernels.fused_cpu() == "module"
    assert f"removing the stale lock file {folder / 'lock'}" in caplog.text


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_a_stale_lock_waits_for_the_compiler_the_killed_build_left(tmp_path, caplog):
    """ninja runs each compile in a process group of its own: killing a build's job can leave
    its compiler running in the build folder; the next build waits for it before compiling."""
    (tmp_path / "lock").write_text("")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while orphan.pid not in kernels._processes_in(tmp_path):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with caplog.at_level(logging.INFO, logger="rnnkit"), pytest.raises(kernels.KernelUnavailable) as exc:
            kernels._clear_stale_baton(tmp_path, wait_s=0.5)
        assert str(orphan.pid) in exc.value.reason and str(tmp_path / "lock") in exc.value.reason
        assert f"waiting for processes [{orphan.pid}]" in caplog.text
        assert (tmp_path / "lock").exists()
    finally:
        orphan.kill()
        orphan.wait()
    kernels._clear_stale_baton(tmp_path, wait_s=5)
    assert not (tmp_path / "lock").exists()


HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("held", flush=True)
    time.sleep(120)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder / kernels.LOCK_NAME)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_live_holder_is_waited_for_a_bounded_time(tmp_path, caplog):
    holder = hold_lock(tmp_path)
    try:
        start = time.monotonic()
        with caplog.at_level(logging.INFO, logger="rnnkit"):
            with pytest.raises(kernels.KernelUnavailable) as exc:
                with kernels.build_lock(tmp_path, wait_s=0.5):
                    pytest.fail("took the lock another process holds")
        assert time.monotonic() - start < 10
        assert str(tmp_path / kernels.LOCK_NAME) in exc.value.reason and str(holder.pid) in exc.value.reason
        assert f"waiting for process {holder.pid}" in caplog.text
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_killed_holder_frees_the_lock(tmp_path):
    holder = hold_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with kernels.build_lock(tmp_path, wait_s=30):
        assert (tmp_path / kernels.LOCK_NAME).read_text().strip() == str(os.getpid())
    assert time.monotonic() - start < 1


# -- real builds (1-2 minutes each)

BUILD = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    from rnnkit.engine import kernels
    module = kernels.fused_cpu()
    print(module.__file__)
""")


def start_build(root: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(root)}
    return subprocess.Popen([sys.executable, "-c", BUILD], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def ninja_steps(folder: Path) -> list[str]:
    """The build steps ninja ran in ``folder`` (one line each in its log)."""
    lines = (folder / ".ninja_log").read_text().splitlines()
    return [line.split("\t")[3] for line in lines if line and not line.startswith("#")]


@pytest.mark.slow
def test_two_processes_at_once_build_once_and_both_load_it(tmp_path):
    procs = [start_build(tmp_path / "ext") for _ in range(2)]
    results = [proc.communicate(timeout=900) for proc in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    so = Path(paths.pop())
    assert so.parent.name == kernels.fused_cpu_name()
    errs = [err for _, err in results]
    assert sum("compiling the fused CPU kernels" in err for err in errs) == 1, errs
    assert sorted(ninja_steps(so.parent)) == ["fused_cpu.o", so.name], "built more than once"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_build_killed_midway_leaves_no_lock_that_blocks_the_next(tmp_path):
    root = tmp_path / "ext"
    first = start_build(root, start_new_session=True)
    folder = root / kernels.fused_cpu_name()
    deadline = time.monotonic() + 120
    while not (folder / "lock").exists():  # PyTorch's lock file: the build has started
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
        time.sleep(0.1)
    time.sleep(2)
    os.killpg(first.pid, signal.SIGKILL)  # the process and its compiler, as a stopped job is
    first.wait()
    assert (folder / "lock").exists()
    second = start_build(root)
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err
    assert f"removing the stale lock file {folder / 'lock'}" in err
    if Path("/proc/self/cwd").exists():  # the killed build's compiler ran on; the second build waited for it
        assert f"left running in {folder}" in err
    assert Path(out.strip()).parent == folder and not (folder / "lock").exists()
    assert kernels._processes_in(folder) == []
