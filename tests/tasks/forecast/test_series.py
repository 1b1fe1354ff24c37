"""CSV series loading, bad-input errors, splits, scaling and windows without leakage."""

import gzip

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.forecast.series import (
    Scaler,
    calendar_features,
    chronological_split,
    future_dates,
    infer_freq,
    make_windows,
    part_size,
    read_series_csv,
    series_from_values,
    write_series_csv,
)
from rnnkit.tasks.forecast.transform import SeriesTransform
from tests.files import SHARED_DATA

SHARED = SHARED_DATA / "timeseries"


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_plain_gz_and_columns(tmp_path):
    text = '"Month","A","B"\n"2000-01",1,10\n"2000-02",2.5,20\n"2000-03",3,30\n'
    path = write(tmp_path, text)
    with gzip.open(tmp_path / "s.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)
    for p in (path, tmp_path / "s.csv.gz"):
        s = read_series_csv(p)
        assert s.columns == ["A", "B"] and s.freq == "M"
        np.testing.assert_array_equal(s.column("A"), [1, 2.5, 3])
        assert str(s.dates[0]) == "2000-01-01"
    only = read_series_csv(path, ["B"])
    np.testing.assert_array_equal(only.column(None), [10, 20, 30])
    with pytest.raises(DataError, match="several value columns"):
        read_series_csv(path).column(None)


def test_missing_value_names_file_line_and_row(tmp_path):
    path = write(tmp_path, "Date,Temp\n1990-01-01,1.0\n1990-01-02,\n1990-01-03,2\n")
    with pytest.raises(DataError, match=r"s.csv:3: row 2: missing value in column 'Temp'"):
        read_series_csv(path)
    path = write(tmp_path, "Date,Temp\n1990-01-01,1.0\n1990-01-02,NA\n")
    with pytest.raises(DataError, match=r":3: row 2: missing value"):
        read_series_csv(path)


def test_unparsable_date_and_bad_value_name_the_row(tmp_path):
    path = write(tmp_path, "Date,Temp\n1990-01-01,1.0\n1990-01-02,2\n1990-13-45,3\n")
    with pytest.raises(DataError, match=r"s.csv:4: row 3: cannot parse date '1990-13-45' in column 'Date'"):
        read_series_csv(path)
    path = write(tmp_path, "Date,Temp\n1990-01-01,1.0\n1990-01-02,abc\n")
    with pytest.raises(DataError, match=r":3: row 2: value 'abc' in column 'Temp' is not a number"):
        read_series_csv(path)
    path = write(tmp_path, "Date,Temp\n1990-01-02,1.0\n1990-01-01,2\n")
    with pytest.raises(DataError, match=r":3: row 2: date 1990-01-01 does not come after"):
        read_series_csv(path)


def test_unknown_columns_list_the_available_ones(tmp_path):
    path = write(tmp_path, "Date,Temp,Rain\n1990-01-01,1.0,0\n")
    with pytest.raises(DataError, match=r"no value column 'Tmp'; available: Temp, Rain"):
        read_series_csv(path, ["Tmp"])
    with pytest.raises(DataError, match=r"no date column 'When'; available: Date, Temp, Rain"):
        read_series_csv(path, date_column="When")
    with pytest.raises(DataError, match="no such file"):
        read_series_csv(tmp_path / "none.csv")


def test_values_written_as_csv_read_back_exactly(tmp_path):
    values = [1 / 3, 2.5e-17, -123456789.123456789, 0.1 + 0.2]
    months = series_from_values(values, ["1999-11", "1999-12", "2000-01", "2000-02"])
    assert months.freq == "M" and str(months.dates[2]) == "2000-01-01"
    years = series_from_values(np.array(values))  # no dates: yearly steps from the year 1001
    assert years.freq == "Y" and [str(d) for d in years.dates[:2]] == ["1001-01-01", "1002-01-01"]
    for series, name in ((months, "m.csv"), (years, "y.csv")):
        back = read_series_csv(write_series_csv(series, tmp_path / name))
        np.testing.assert_array_equal(back.values, series.values)
        np.testing.assert_array_equal(back.dates, series.dates)
        assert back.freq == series.freq and back.columns == ["value"]
    with pytest.raises(DataError, match="m.csv exists already"):
        write_series_csv(months, tmp_path / "m.csv")
    with pytest.raises(DataError, match="date 1999-12-01 at position 1 does not come after 1999-12-01"):
        series_from_values([1, 2], ["1999-12", "1999-12"])


def test_frequency_future_dates_and_calendar():
    months = np.array(["2000-01-31", "2000-02-29", "2000-03-31"], dtype="datetime64[D]")
    assert infer_freq(months) == "M"
    assert [str(d) for d in future_dates(months, "M", 2)] == ["2000-04-30", "2000-05-31"]
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-15"))
    assert infer_freq(days) == "D" and str(future_dates(days, "D", 1)[0]) == "2024-01-15"
    cal = calendar_features(days, "D")
    assert cal.shape == (14, 13)
    np.testing.assert_array_equal(cal[0, 6:], np.eye(7)[0])  # 2024-01-01 was a Monday
    month_cal = calendar_features(months, "M")
    assert month_cal.shape == (3, 12) and month_cal[1, 1] == 1


def test_part_sizes_and_split():
    assert part_size("24", 144, "test") == 24
    assert part_size("10%", 2820, "test") == 282
    assert part_size("0.2", 365, "test") == 73
    with pytest.raises(DataError, match="count"):
        part_size("ten", 10, "test")
    split = chronological_split(144, 24, 24)
    assert (split.train_end, split.valid_end) == (96, 120)
    with pytest.raises(DataError, match="cannot hold test 24 and valid 24"):
        chronological_split(40, 24, 24)


def test_scaler_and_training_windows_do_not_see_the_future():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200).cumsum()
    train_end = 150
    changed = y.copy()
    changed[train_end:] = 1e6  # a different future
    for series in (y, changed):
        t = SeriesTransform(difference=1).fit(series[:train_end])
        assert (t.mean, t.std) == pytest.approx((SeriesTransform(difference=1).fit(y[:train_end]).mean,
                                                 SeriesTransform(difference=1).fit(y[:train_end]).std))
    scaler = Scaler.fit(y[:train_end])
    assert Scaler.fit(changed[:train_end]) == scaler
    z, zc = scaler.transform(y), scaler.transform(changed)
    X, Y = make_windows(z[:, None], z, 12, 1, 0, train_end)
    Xc, Yc = make_windows(zc[:, None], zc, 12, 1, 0, train_end)
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(Y, Yc)
    assert len(Y) == train_end - 12
    # every input precedes its target: window i reads z[i : i+12] and predicts z[i+12]
    np.testing.assert_array_equal(X[5, :, 0], z[5:17])
    assert Y[5, 0] == z[17]
    # validation windows: targets in [150, 180), inputs may reach back into train, not forward
    Xv, Yv = make_windows(z[:, None], z, 12, 3, 150, 180)
    assert len(Yv) == 28 and Yv[0, 0] == z[150] and Yv[-1, -1] == z[179]
    np.testing.assert_array_equal(Xv[0, :, 0], z[138:150])


def test_transform_round_trip_with_log_and_differences():
    t_axis = np.arange(60)
    y = np.exp(0.02 * t_axis) * (10 + 3 * np.sin(2 * np.pi * t_axis / 12))
    tr = SeriesTransform(log=True, difference=1, season=12).fit(y[:48])
    z = tr.forward(y)
    assert np.isnan(z[:13]).all() and np.isfinite(z[13:]).all()
    back = tr.inverse(z[48:][None, :], y[:48])[0]
    np.testing.assert_allclose(back, y[48:], rtol=1e-10)
    with pytest.raises(DataError, match="log needs positive values"):
        SeriesTransform(log=True).fit(np.array([1.0, 0.0, 2.0]))


def test_seasonal_profile_recovers_the_season_from_the_training_part_only():
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(1)
    t_axis = np.arange(150)
    season = 0.2 * np.sin(2 * np.pi * t_axis / 12) + 0.1 * np.cos(4 * np.pi * t_axis / 12)
    y = np.exp(4 + 0.01 * t_axis + season + 0.01 * rng.normal(size=150))
    tr = SeriesTransform(log=True, difference=1, profile_period=12).fit(y[:120])
    # the per-phase profile is the generating season (STL, robust; noise 0.01)
    np.testing.assert_allclose(tr.profile, season[:12], atol=0.02)
    assert abs(sum(tr.profile)) < 1e-12
    # only the training part is read: another future leaves the profile and scaling unchanged
    changed = y.copy()
    changed[120:] *= 5.0
    other = SeriesTransform(log=True, difference=1, profile_period=12).fit(changed[:120])
    assert other.profile == tr.profile and (other.mean, other.std) == (tr.mean, tr.std)
    # forward removes it (position t uses phase t mod 12), inverse puts it back, also after a
    # round trip through to_dict (what a saved run keeps)
    z = tr.forward(y)
    w = np.log(y) - np.array(tr.profile)[t_axis % 12]
    np.testing.assert_allclose(z[1:], (np.diff(w) - tr.mean) / tr.std, rtol=1e-12)
    again = SeriesTransform(**tr.to_dict())
    np.testing.assert_allclose(again.inverse(z[130:][None, :], y[:130])[0], y[130:], rtol=1e-10)


def test_seasonal_profile_smoothed_to_k_harmonics_is_the_fourier_low_pass_of_the_raw_one():
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(2)
    m, n = 52, 52 * 6
    t_axis = np.arange(n)
    season = 2 * np.sin(2 * np.pi * t_axis / m) + np.cos(4 * np.pi * t_axis / m)
    y = 0.02 * t_axis + season + rng.normal(size=n)
    raw = np.array(SeriesTransform(profile_period=m).fit(y).profile)
    smooth = np.array(SeriesTransform(profile_period=m, harmonics=3).fit(y).profile)
    # oracle: keep the DFT coefficients of frequencies 1..3 (and their mirror images) only
    spectrum = np.fft.fft(raw)
    keep = np.zeros(m, bool)
    keep[1:4] = keep[-3:] = True
    np.testing.assert_allclose(smooth, np.fft.ifft(np.where(keep, spectrum, 0)).real, atol=1e-10)
    # with noise of sd 1 and six cycles, the smooth profile is nearer the truth than the raw one
    assert np.abs(smooth - season[:m]).mean() < 0.6 * np.abs(raw - season[:m]).mean()


def test_seasonal_profile_errors_say_what_was_expected():
    with pytest.raises(DataError, match="0 \\(none\\) or >= 2, got 1"):
        SeriesTransform(profile_period=1)
    with pytest.raises(DataError, match="0 < 2K < the profile period, got K=6 for period 12"):
        SeriesTransform(profile_period=12, harmonics=6)
    with pytest.raises(DataError, match="got K=2 for period 0"):
        SeriesTransform(harmonics=2)
    with pytest.raises(DataError, match="3 values for period 12"):
        SeriesTransform(profile_period=12, profile=[0.0, 0.1, 0.2])
    with pytest.raises(DataError, match="not fitted yet"):
        SeriesTransform(profile_period=4).forward(np.ones(10))
    pytest.importorskip("statsmodels")
    with pytest.raises(DataError, match="period 12 needs at least 25 training points .* got 20"):
        SeriesTransform(profile_period=12).fit(np.ones(20))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/timeseries is absent")
def test_shared_series_load():
    s = read_series_csv(SHARED / "airline-passengers.csv")
    assert s.columns == ["Passengers"] and len(s.values) == 144 and s.freq == "M"
    t = read_series_csv(SHARED / "daily-min-temperatures.csv")
    assert len(t.values) == 3650 and t.freq == "D"
