"""The M4 file formats: series files (plain and .gz), the test file's true future, the
submission format written and read back, and the errors that name file, line and column."""

import gzip

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.forecast.m4 import M4Set, read_m4, read_m4_forecasts, read_m4_test, write_m4_forecasts
from tests.files import SHARED_DATA, write_text

M4 = SHARED_DATA / "m4"

HEADER = '"V1","V2","V3","V4","V5"\n'


def write(tmp_path, text, name="s.csv"):
    return write_text(tmp_path / name, text)


TRAIN = HEADER + '"H1","1","2","3","4"\n"H2","5.5","6",""\n"H3","7","","",""\n'


@pytest.mark.parametrize("name", ["s.csv", "s.csv.gz"])
def test_read_strips_trailing_empty_cells(tmp_path, name):
    path = write(tmp_path, TRAIN, name)
    data = read_m4(path)
    assert isinstance(data, M4Set) and len(data) == 3
    assert data.ids == ["H1", "H2", "H3"]
    assert [s.tolist() for s in data.series] == [[1, 2, 3, 4], [5.5, 6], [7]]
    assert all(s.dtype == np.float64 for s in data.series)
    assert data.path == str(path)
    assert data.lines == [2, 3, 4]


def test_blank_lines_and_unquoted_cells_are_read(tmp_path):
    data = read_m4(write(tmp_path, "V1,V2,V3\n\nH1,1,2\n\nH2,3\n\n"))
    assert data.ids == ["H1", "H2"] and [s.tolist() for s in data.series] == [[1, 2], [3]]


@pytest.mark.parametrize("body, where, what", [
    ('"H1","1","abc","3"\n', ":2: series 'H1', column 3 (\"V3\")", "'abc' is not a number"),
    ('"H1","1","2"\n"H2","4","","6"\n', ":3: series 'H2': ragged row: empty cell at column 3 (\"V3\")",
     "followed by the value '6' at column 4 (\"V4\")"),
    ('"H1","",""\n', ":2: series 'H1'", "the series has no values"),
    ('"H1"\n', ":2: series 'H1'", "the series has no values"),
    ('"H1","1"\n"H2","2"\n"H1","3"\n', ":4: series 'H1'", "duplicate id (first on line 2)"),
    ('"H1","1","nan"\n', ":2: series 'H1', column 3 (\"V3\")", "'nan' is not a finite number"),
    ('"H1","inf","1"\n', ":2: series 'H1', column 2 (\"V2\")", "'inf' is not a finite number"),
    ('"H1","1","2","3","4","5"\n', ":2", "6 cells, but the header has 5 columns"),
    ('"","1"\n', ":2, column 1 (\"V1\")", "empty series id"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, body, where, what):
    path = write(tmp_path, HEADER + body)
    with pytest.raises(DataError) as caught:
        read_m4(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}"), message
    assert what in message, message


def test_bad_cell_in_gz_file_names_the_line(tmp_path):
    path = write(tmp_path, HEADER + '"H1","1"\n"H2","1","x"\n', "s.csv.gz")
    with pytest.raises(DataError, match=r"s\.csv\.gz:3: series 'H2', column 3 \(\"V3\"\): 'x' is not a number"):
        read_m4(path)


def test_too_short_series(tmp_path):
    path = write(tmp_path, HEADER + '"H1","1","2","3"\n"H2","1","2"\n')
    assert [len(s) for s in read_m4(path, min_length=2).series] == [3, 2]
    with pytest.raises(DataError, match=r":3: series 'H2': 2 values; expected at least 3"):
        read_m4(path, min_length=3)


@pytest.mark.parametrize("text, what", [
    ("", "empty file; expected a header row"),
    ("\n\n", "empty file; expected a header row"),
    (HEADER, "no series after the header"),
])
def test_empty_files(tmp_path, text, what):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=what) as caught:
        read_m4(path)
    assert str(caught.value).startswith(str(path))


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_m4(tmp_path / "absent.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + b'"H1","1"\n"H\xe9","2"\n')
    with pytest.raises(DataError, match=r"latin1\.csv:3: not UTF-8"):
        read_m4(path)


def test_test_file_in_training_order(tmp_path):
    train = read_m4(write(tmp_path, HEADER + '"H1","1","2"\n"H2","3","4"\n', "train.csv"))
    path = write(tmp_path, '"V1","V2","V3"\n"H2","30","40"\n"H1","10","20"\n', "test.csv")
    future = read_m4_test(path, train, horizon=2)
    assert future.shape == (2, 2) and future.tolist() == [[10, 20], [30, 40]]


def test_test_file_errors(tmp_path):
    ids = [f"H{i}" for i in range(1, 9)]
    train = read_m4(write(tmp_path, HEADER + "".join(f'"{i}","1","2"\n' for i in ids), "train.csv"))
    rows = [i for i in ids if i not in ("H3", "H7")] + ["X1"]
    path = write(tmp_path, '"V1","V2","V3"\n' + "".join(f'"{i}","1","2"\n' for i in rows), "test.csv")
    with pytest.raises(DataError) as caught:
        read_m4_test(path, train, 2)
    message = str(caught.value)
    assert message.startswith(f"{path}: the ids differ")
    assert "2 of the 8 training ids are missing ('H3', 'H7')" in message
    assert "1 ids are not in the training file" in message and "'X1'" in message
    many = write(tmp_path, '"V1","V2"\n' + "".join(f'"Z{i}","1"\n' for i in range(20)), "many.csv")
    with pytest.raises(DataError, match=r"8 of the 8 training ids are missing \('H1', 'H2', 'H3', 'H4', 'H5' and "
                                        r"3 more\); 20 ids .*'Z4' and 15 more\)"):
        read_m4_test(many, train, 2)
    rows = [f'"{i}","1"\n' if i == "H4" else f'"{i}","1","2"\n' for i in ids]
    short = write(tmp_path, '"V1","V2","V3"\n' + "".join(rows), "short.csv")
    with pytest.raises(DataError, match=r"short\.csv:5: series 'H4' has 1 values; expected exactly 2 \(the horizon\)"):
        read_m4_test(short, train, 2)
    with pytest.raises(DataError, match=r":2: series 'H1' has 2 values; expected exactly 3"):
        read_m4_test(write(tmp_path, '"V1","V2","V3"\n' + "".join(f'"{i}","1","2"\n' for i in ids), "t2.csv"),
                     train, 3)
    with pytest.raises(DataError, match="'oops' is not a number"):
        read_m4_test(write(tmp_path, '"V1","V2"\n"H1","oops"\n', "bad.csv"), train, 1)


@pytest.mark.parametrize("name", ["f.csv", "f.csv.gz"])
def test_forecasts_round_trip_exactly(tmp_path, name):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 7)) * 10.0 ** rng.integers(-8, 9, size=(5, 7))
    values[0, 0] = 0.1 + 0.2  # a float whose shortest text has 17 digits
    ids = [f"H{i}" for i in range(1, 6)]
    path = tmp_path / name
    write_m4_forecasts(path, ids, values)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # the temporary file is gone
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "id,F1,F2,F3,F4,F5,F6,F7" and lines[1].startswith("H1,0.30000000000000004,")
    got_ids, got = read_m4_forecasts(path)
    assert got_ids == ids and got.dtype == np.float64
    np.testing.assert_array_equal(got, values)


def test_write_forecasts_replaces_a_file_and_checks_its_input(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("old\n")
    write_m4_forecasts(path, ["a", "b"], np.ones((2, 3)))
    assert read_m4_forecasts(path)[1].shape == (2, 3)
    with pytest.raises(ValueError, match=r"shape \(len\(ids\), horizon\) = \(3, h >= 1\), got \(2, 3\)"):
        write_m4_forecasts(path, ["a", "b", "c"], np.ones((2, 3)))
    with pytest.raises(ValueError, match="unique"):
        write_m4_forecasts(path, ["a", "a"], np.ones((2, 3)))
    bad = np.ones((2, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite; got nan for 'b' at step 3"):
        write_m4_forecasts(path, ["a", "b"], bad)
    assert read_m4_forecasts(path)[0] == ["a", "b"]  # a refused write leaves the old file
    with pytest.raises(DataError, match=r":3: series 'b' has 1 forecasts; expected 2"):
        read_m4_forecasts(write(tmp_path, "id,F1,F2\na,1,2\nb,1\n", "uneven.csv"))


@pytest.mark.skipif(not (M4 / "Hourly-train.csv.gz").is_file(), reason="../shared/data/m4 is absent")
def test_m4_hourly_files():
    train = read_m4(M4 / "Hourly-train.csv.gz")
    future = read_m4_test(M4 / "Hourly-test.csv.gz", train, 48)
    assert len(train) == 414 and train.ids[:2] == ["H1", "H2"]
    assert min(map(len, train.series)) == 700 and max(map(len, train.series)) == 960
    assert future.shape == (414, 48) and np.isfinite(future).all()
    assert train.series[0][:3].tolist() == [605, 586, 586]
