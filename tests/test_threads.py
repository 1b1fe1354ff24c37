"""rnnkit.threads: the thread policy of ``rnnkit train`` and ``rnnkit evaluate``."""

import functools
import logging
import os
import subprocess
import sys
import time

import pytest
import torch

from rnnkit import threads
from rnnkit.cli import build_parser


@pytest.fixture(autouse=True)
def _keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in threads.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


def test_parse_threads():
    assert threads.parse_threads("auto") == "auto"
    assert threads.parse_threads(" Torch ") == "torch"
    assert threads.parse_threads("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="a count >= 1, 'auto' or 'torch'"):
            threads.parse_threads(bad)


def test_configure_a_count_and_leaving_torch_alone():
    assert threads.configure(1) == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert threads.configure(None) == 2 and threads.configure("torch") == 2
    assert threads.configure("1") == 1 and torch.get_num_threads() == 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError):
            threads.configure(bad)


@pytest.mark.parametrize("cpus, load, expected", [
    (1, 0, 1), (1, 3, 1),
    (2, 0, 2), (2, 1, 1), (2, 4, 1),
    (4, 0, 4), (4, 1, 3), (4, 2.6, 1), (4, 9, 1),
    (16, 0, 16), (16, 4, 12), (16, 15.6, 1),
])
def test_auto_uses_the_cpus_other_processes_leave(monkeypatch, cpus, load, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "_initial_threads", [64])
    count, why = threads.auto_threads(load=load)
    assert count == expected
    assert f"{cpus} CPUs" in why


def test_auto_never_exceeds_torchs_own_count(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    monkeypatch.setattr(threads, "_initial_threads", [4])
    assert threads.auto_threads(load=0)[0] == 4


def test_adapt_drops_threads_fast_and_adds_them_slowly(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_initial_threads", [2])
    torch.set_num_threads(2)
    adapt = threads.Adapt(window=4)
    assert adapt.check(1) == 2  # one busy count: could be a blip
    assert adapt.check(2) == 2
    assert adapt.check(1) == 2
    assert adapt.check(1) == 1 and torch.get_num_threads() == 1  # two in a row: down
    for _ in range(3):
        assert adapt.check(2) == 1  # up only when the whole window is free
    assert adapt.check(2) == 2 and torch.get_num_threads() == 2
    assert adapt.check(0) == 2 and adapt.check(0) == 1  # never below one
    assert [count for _, count in adapt.changes] == [1, 2, 1]


def test_auto_with_adapt_follows_the_load_at_each_optimizer_step(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_initial_threads", [2])
    load = [0.0]
    monkeypatch.setattr(threads, "other_load", lambda *a, **k: load[0])
    monkeypatch.setattr(threads, "Adapt", functools.partial(threads.Adapt, interval=0.0, window=3))
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        assert threads.configure("auto", adapt=True) == 2
        load[0] = 1.0
        for _ in range(2):
            opt.step()
        assert torch.get_num_threads() == 1
        load[0] = 0.0
        for _ in range(3):
            opt.step()
        assert torch.get_num_threads() == 2
        threads.stop_adapting()
        load[0] = 1.0
        for _ in range(3):
            opt.step()
        assert torch.get_num_threads() == 2  # no hook any more
    finally:
        threads.stop_adapting()


def test_auto_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    count, why = threads.auto_threads(load=0)
    assert count == torch.get_num_threads() and why == "OMP_NUM_THREADS=2"


def test_configure_auto_sets_and_says_what_it_chose(monkeypatch, caplog):
    monkeypatch.setattr(threads, "auto_threads", lambda: (1, "2 CPUs, 1 busy with other processes"))
    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        assert threads.configure("auto") == 1
    assert torch.get_num_threads() == 1
    assert "1 CPU thread (2 CPUs, 1 busy with other processes; --threads N to choose)" in caplog.text


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs /proc")
def test_other_load_sees_a_busy_process_and_not_this_one():
    assert threads._running_here() >= 1  # the thread that asks
    spin = subprocess.Popen([sys.executable, "-c", "print('go', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout.readline().strip() == "go"
        time.sleep(0.2)
        assert threads.other_load() >= 1
    finally:
        spin.kill()
        spin.wait()


def test_cgroup_quota(tmp_path):
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert threads.cgroup_cpu_quota(v1) == 3.0


def test_usable_cpus_is_capped_by_a_quota(monkeypatch):
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 0.5)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.usable_cpus() >= 1


# -- the command line


@pytest.fixture(scope="module")
def parser():
    return build_parser()[0]


def a_task(parser):
    from rnnkit.tasks.base import all_tasks

    return all_tasks()[0].NAME


def test_train_and_evaluate_take_threads(parser):
    task = a_task(parser)
    assert parser.parse_args(["train", task]).threads == "auto"
    assert parser.parse_args(["train", task, "--threads", "1"]).threads == 1
    assert parser.parse_args(["train", task, "--threads", "torch"]).threads == "torch"
    assert parser.parse_args(["evaluate", "RUN"]).threads == "auto"
    assert parser.parse_args(["evaluate", "--threads", "2", "RUN"]).threads == 2


def test_policy_restores_the_count_and_removes_the_hook():
    torch.set_num_threads(2)
    with threads.policy(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads.policy("auto", adapt=True):
        assert threads.adapting() is not None
    assert threads.adapting() is None and torch.get_num_threads() == 2


def test_train_and_evaluate_run_with_threads(tmp_path, capsys):
    from rnnkit.cli import main

    data = tmp_path / "corpus.txt"
    data.write_text("the cat sat on the mat.\n" * 60)
    run = tmp_path / "run"
    tiny = ["--data", str(data), "--epochs", "1", "--bptt", "20", "--batch-size", "4", "--no-progress",
            "--hidden-size", "8", "--embed-size", "4", "--num-layers", "1", "--sample-length", "0"]
    before = torch.get_num_threads()
    assert main(["train", "lm", "--run", str(run), *tiny]) == 0
    out = capsys.readouterr().out
    assert "CPU thread" in out and "following the load" in out  # --threads auto, the default
    assert threads.adapting() is None and torch.get_num_threads() == before
    assert main(["train", "lm", "--run", str(tmp_path / "one"), "--threads", "1", *tiny]) == 0
    assert "CPU thread" not in capsys.readouterr().out
    assert "threads" not in (run / "config.json").read_text()
    assert main(["evaluate", str(run), "--threads", "1"]) == 0
    assert main(["evaluate", "--threads", "torch", str(run), "--split", "valid"]) == 0
    assert "loss" in capsys.readouterr().out


def test_a_bad_thread_count_is_one_clear_line(parser, capsys):
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["train", a_task(parser), "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads: threads must be a count >= 1, 'auto' or 'torch'; got 0" in capsys.readouterr().err


def test_the_contention_benchmark_runs(capsys, monkeypatch):
    """benchmarks/contention.py end to end on a tiny shape (no timing is asserted)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--shapes", "4x2x8", "--repeats", "1", "--warmup", "0",
                                      "--threads", "1", "auto"])
    runpy.run_path(str(script), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if "| 4, 2, 8 |" in line]
    assert len(rows) == 8  # idle and busy, 1 thread and auto, fwd+bwd and fwd
    assert rows[0].startswith("| idle | 1 |") and rows[-1].startswith("| busy | 1 (auto) |")
    assert all(line.count("|") == 11 for line in rows)


def test_the_contention_timeline_runs(capsys, monkeypatch):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--shapes", "4x2x8", "--timeline", "1.5"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ms" not in line and "---" not in line]
    assert len(rows) == 3 and any(line.startswith("| auto (from ") for line in rows)
    assert threads.adapting() is None  # the benchmark removed its hook


def test_the_contention_quiet_rounds_run(capsys, monkeypatch):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--shapes", "4x2x8", "--quiet", "0.02"])
    runpy.run_path(str(script), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4, 2, 8 |")]
    assert len(rows) == 4 and all(line.count("|") == 8 for line in rows)  # 2 models x 2 modes
