"""CLI smoke test: train a few steps on a small slice, evaluate, sample, in a temp folder."""


from rnnkit.cli import main


def test_train_evaluate_sample(tmp_path, capsys):
    text = ("the cat sat on the mat.\nthe dog sat on the log.\n" * 200)
    data = tmp_path / "corpus.txt"
    data.write_text(text)
    config = tmp_path / "cfg.toml"
    config.write_text("[model]\nhidden_size = 24\nembed_size = 8\nnum_layers = 1\n[train]\nlr = 0.01\n")
    run = tmp_path / "run"
    rc = main(["train", "lm", "--data", str(data), "--config", str(config), "--run", str(run),
               "--epochs", "2", "--bptt", "20", "--batch-size", "4", "--no-progress", "--sample-length", "20"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "validation bits/char" in out and "sample:" in out
    assert (run / "metrics.csv").is_file() and (run / "config.json").is_file()
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()

    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    bpc = float(out.split("bpc ")[1].split(",")[0])
    assert 0 < bpc < 3.5  # a repetitive text is learned well below log2(vocab) = 4.1

    assert main(["sample", str(run), "--prime", "the ", "--length", "30", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.strip()) >= 20
    assert main(["sample", str(run), "--prime", "the ", "--length", "30", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # seeded sampling repeats


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "lm", "--data", str(tmp_path / "missing.txt"), "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.txt: no such file or folder" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden_size = 3\n")
    assert main(["train", "lm", "--config", str(bad), "--run", str(tmp_path / "r")]) == 2
    assert "unknown setting model.hiden_size" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint here" in capsys.readouterr().err
