"""README's promises that can be checked: the quickstart it describes is the Makefile's, its
resume line needs no settings flags, and every data folder the docs read is in docs/data.md."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quickstart_described_as_the_makefile_runs_it():
    make = re.search(r"^quickstart:.*\n\t(.*)$", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M).group(1)
    command = re.search(r"(rnnkit train lm .*?) --run", make).group(1)
    assert f"`{command} --run runs/quickstart-<time>`" in README
    epochs = re.search(r"--epochs (\d+)", make).group(1)
    assert f"{epochs} epochs" in README


def test_resume_line_takes_the_runs_own_settings():
    line = next(line for line in README.splitlines() if "--resume" in line and line.startswith(".venv/bin/rnnkit"))
    flags = re.findall(r"--[a-z-]+", line.split("#")[0])
    assert flags == ["--run", "--resume", "--epochs"]


def test_every_shared_data_folder_the_docs_use_is_in_docs_data():
    data = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    assert "(docs/data.md)" in README
    docs = [README] + [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs" / "tasks").glob("*.md"))]
    folders = {m for text in docs for m in re.findall(r"\.\./shared/data/([a-z_0-9]+)", text)}
    assert folders, "no ../shared/data paths found"
    for folder in folders:
        assert f"  {folder}/" in data, folder
