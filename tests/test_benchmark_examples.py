"""The examples in each benchmark script's help (its docstring) use flags the script has."""

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
EXAMPLES = [(script, line) for script in sorted(BENCHMARKS.glob("*.py"))
            for line in re.findall(rf"^\s*python benchmarks/{re.escape(script.name)}(.*)$",
                                   script.read_text(encoding="utf-8"), flags=re.M)]


class Parsed(Exception):
    """Raised once the command line has parsed: the benchmark itself is not run."""


def test_every_script_shows_an_example():
    assert {script.name for script, _ in EXAMPLES} == {script.name for script in BENCHMARKS.glob("*.py")}


@pytest.mark.parametrize("script, line", EXAMPLES, ids=[f"{s.name}:{a.strip()}" for s, a in EXAMPLES])
def test_help_example_parses(script, line, monkeypatch):
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real(self, args, namespace)  # exits 2 on an unknown flag
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [str(script)] + shlex.split(line, comments=True))
    with pytest.raises(Parsed):
        runpy.run_path(str(script), run_name="__main__")
