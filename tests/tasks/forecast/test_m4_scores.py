"""M4's measures against numbers worked out by hand, its seasonality test and decomposition
(on series with a known season, and against statsmodels' decomposition), R's Nelder-Mead and
the ETS fits built on it, the benchmarks, and the published M4 Hourly figures."""

import math
import sys

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.forecast import m4_scores as S
from rnnkit.tasks.forecast.m4 import read_m4, read_m4_test
from tests.files import SHARED_DATA

M4 = SHARED_DATA / "m4"


# ---- measures ----------------------------------------------------------------------------------

def test_smape_by_hand():
    # 200 * 10 / 210 = 9.5238095..., 200 * 20 / 380 = 10.5263157...; mean 10.0250626...
    assert S.smape([100, 200], [110, 180]) == pytest.approx((2000 / 210 + 4000 / 380) / 2, rel=1e-12)
    assert S.smape([100, 200], [110, 180]) == pytest.approx(10.025062656641604, rel=1e-12)
    assert S.smape([0, 5], [0, 5]) == 0.0  # 0/0 counts 0


def test_mase_by_hand():
    # m = 1: insample 1, 2, 4, 7 -> |diffs| 1, 2, 3 -> scale 2; errors |8-9|, |10-7| -> MAE 2 -> MASE 1
    assert S.mase([8, 10], [9, 7], [1, 2, 4, 7], 1) == pytest.approx(1.0)
    # m = 2: insample 1, 3, 2, 4, 3, 5 -> y_t - y_{t-2} = 1, 1, 1, 1 -> scale 1; MAE (1 + 2) / 2 = 1.5
    assert S.mase([6, 7], [5, 9], [1, 3, 2, 4, 3, 5], 2) == pytest.approx(1.5)
    with pytest.raises(DataError, match="needs more than 2 history points"):
        S.mase([1], [1], [1, 2], 2)


def test_msis_and_coverage_by_hand():
    # alpha 0.05 -> 2/alpha = 40.  step 1: A=10 in [8, 12]: width 4.
    # step 2: A=20 < L=21: 4 + 40 * 1 = 44.  step 3: A=30 > U=28: 3 + 40 * 2 = 83.
    # mean (4 + 44 + 83) / 3 = 131/3; scale (m = 1, insample 1, 2, 4, 7) 2 -> 131/6
    args = ([10, 20, 30], [8, 21, 25], [12, 25, 28])
    assert S.msis(*args, [1, 2, 4, 7], 1) == pytest.approx(131 / 6)
    # alpha 0.2 -> 2/alpha = 10: (4 + 14 + 23) / 3 / 2 = 41/6
    assert S.msis(*args, [1, 2, 4, 7], 1, alpha=0.2) == pytest.approx(41 / 6)
    assert S.coverage(*args) == pytest.approx(1 / 3)
    assert S.coverage([1, 2], [1, 2], [1, 2]) == 1.0  # the bounds are inside
    with pytest.raises(ValueError, match="lower must not exceed upper; got lower 3.0 > upper 2.0 at step 2"):
        S.coverage([1, 2], [0, 3], [1, 2])


def test_score_per_series_and_means():
    actuals = np.array([[100.0, 200.0], [8.0, 10.0]])
    forecasts = np.array([[110.0, 180.0], [9.0, 7.0]])
    insamples = [np.array([100.0, 110.0, 90.0]), np.array([1.0, 2.0, 4.0, 7.0])]
    out = S.score(actuals, forecasts, insamples, 1)
    # series 1: MAE 15, scale (10 + 20) / 2 = 15 -> 1; series 2: 1 (test_mase_by_hand)
    np.testing.assert_allclose(out["mase"], [1.0, 1.0])
    # series 2 sMAPE: 200/17 and 600/17 -> mean 400/17
    np.testing.assert_allclose(out["smape"], [10.025062656641604, 400 / 17])
    assert out["smape_mean"] == pytest.approx((10.025062656641604 + 400 / 17) / 2)
    assert out["mase_mean"] == pytest.approx(1.0)
    assert "msis" not in out
    lower, upper = forecasts - 5, forecasts + 5
    out = S.score(actuals, forecasts, insamples, 1, lower=lower, upper=upper)
    # series 1, intervals [105, 115] and [175, 185]: A=100 < 105 -> 10 + 40*5 = 210; A=200 > 185 ->
    # 10 + 40*15 = 610; mean 410 over the scale 15.  series 2: both inside -> widths 10 over the scale 2
    np.testing.assert_allclose(out["msis"], [410 / 15, 5.0])
    np.testing.assert_allclose(out["coverage"], [0.0, 1.0])
    assert out["coverage_mean"] == 0.5
    with pytest.raises(ValueError, match="both lower and upper"):
        S.score(actuals, forecasts, insamples, 1, lower=lower)
    with pytest.raises(ValueError, match=r"shape \(N, h\)"):
        S.score(actuals, forecasts[:, :1], insamples, 1)
    with pytest.raises(DataError, match=r"series 1 \(0-based\): MASE is undefined"):
        S.score(actuals, forecasts, [insamples[0], np.ones(5)], 1)


def test_owa():
    assert S.owa(9.0, 1.2, 18.0, 2.4) == pytest.approx(0.5)  # (9/18 + 1.2/2.4) / 2
    # sNaive on M4 Hourly from the published means: (13.912/18.383 + 1.193/2.395) / 2 = 0.6275
    assert S.owa(*S.PUBLISHED_HOURLY["snaive"], *S.PUBLISHED_HOURLY["naive2"]) == pytest.approx(
        S.PUBLISHED_HOURLY_OWA["snaive"], abs=6e-4)
    with pytest.raises(ValueError, match="positive"):
        S.owa(1, 1, 0, 1)
    per = S.owa_per_series([9.0, 0.0, 3.0], [1.2, 0.0, 1.0], [18.0, 0.0, 0.0], [2.4, 0.0, 2.0])
    # series 1: 0.5; series 2: both errors 0 -> ratios 1; series 3: sMAPE ratio undefined -> NaN
    assert per[0] == pytest.approx(0.5) and per[1] == 1.0 and math.isnan(per[2])


# ---- seasonality -------------------------------------------------------------------------------

def seasonal_series(n=720, m=24, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    figure = 1 + 0.3 * np.sin(2 * np.pi * np.arange(m) / m)  # averages 1
    t = np.arange(n)
    return (100 + 0.05 * t) * figure[t % m] * (1 + noise * rng.standard_normal(n)), figure


def test_seasonality_test_by_hand():
    # 1, 3, 1, 3, ... (n = 12), m = 2: deviations -1, +1, ...; r_1 = -11/12, r_2 = 10/12;
    # limit 1.645 sqrt((1 + 2 (11/12)^2) / 12) = 0.7775 < 0.8333: seasonal
    y = np.tile([1.0, 3.0], 6)
    np.testing.assert_allclose(S._acf(y, 2), [-11 / 12, 10 / 12])
    assert S.seasonality_test(y, 2)
    # n = 6: r_2 = 4/6 = 0.667 < 1.645 sqrt((1 + 2 (5/6)^2) / 6) = 1.038: not seasonal
    assert not S.seasonality_test(y[:6], 2)
    assert not S.seasonality_test(y[:5], 2)  # n < 3m
    assert not S.seasonality_test(y, 1) and not S.seasonality_test(np.ones(12), 2)


def test_acf_is_the_biased_one_of_statsmodels_and_r():
    stattools = pytest.importorskip("statsmodels.tsa.stattools")
    y, _ = seasonal_series(n=300, noise=0.1)
    np.testing.assert_allclose(S._acf(y, 30), stattools.acf(y, nlags=30, fft=False)[1:], rtol=1e-10)


def test_seasonality_test_finds_the_season_and_not_in_white_noise():
    y, _ = seasonal_series()
    assert S.seasonality_test(y, 24)
    noise = 100 + np.random.default_rng(0).standard_normal(720)
    assert not S.seasonality_test(noise, 24)
    # a 90% test (two-sided): about 10% of white-noise series are judged seasonal (11 of these 100)
    rate = np.mean([S.seasonality_test(np.random.default_rng(k).standard_normal(720), 24) for k in range(100)])
    assert 0.03 <= rate <= 0.2
    # R's acf stops at lag floor(10 log10 n): 23 for n = 240, 24 from n = 252, so M4's test reads NA
    # (not seasonal) below that
    assert not S.seasonality_test(y[:240], 24) and S.seasonality_test(y[:264], 24)


@pytest.mark.parametrize("m", [24, 7])
def test_seasonal_indices_recover_a_known_season(m):
    y, figure = seasonal_series(n=30 * m, m=m)
    indices = S.seasonal_indices(y, m)
    assert indices.shape == (m,) and indices.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(indices, figure, atol=1e-2)


def test_seasonal_indices_by_hand_and_as_statsmodels():
    # 1, 3, 1, 3, 1, 3 with m = 2: the 2x2 moving average (1/4, 1/2, 1/4) is 2 at every inner point;
    # ratios 1.5, 0.5, 1.5, 0.5 at positions 1, 0, 1, 0 -> indices 0.5, 1.5
    np.testing.assert_allclose(S.seasonal_indices(np.tile([1.0, 3.0], 3), 2), [0.5, 1.5])
    seasonal = pytest.importorskip("statsmodels.tsa.seasonal")
    for m, n in ((24, 725), (7, 100)):
        y, _ = seasonal_series(n=n, m=m, noise=0.05)
        expected = seasonal.seasonal_decompose(y, model="multiplicative", period=m).seasonal[:m]
        np.testing.assert_allclose(S.seasonal_indices(y, m), expected, rtol=1e-12)
    with pytest.raises(DataError, match="at least 48 points"):
        S.seasonal_indices(np.ones(40), 24)
    with pytest.raises(DataError, match="positive trend"):
        S.seasonal_indices(np.tile([-1.0, -3.0], 5), 2)


def test_deseasonalize():
    y = np.tile([1.0, 3.0], 6)
    adjusted, inside, future = S.deseasonalize(y, 2, 3)
    np.testing.assert_allclose(inside, np.tile([0.5, 1.5], 6))
    np.testing.assert_allclose(adjusted, 2.0)
    np.testing.assert_allclose(future, [0.5, 1.5, 0.5])
    y, _ = seasonal_series(n=725)  # not a whole number of seasons
    adjusted, inside, future = S.deseasonalize(y, 24, 60)
    np.testing.assert_allclose(future[:24], inside[-24:])  # M4: the last m in-sample indices, repeated
    np.testing.assert_allclose(future[24:48], inside[-24:])
    np.testing.assert_allclose(adjusted * inside, y)
    noise = 100 + np.random.default_rng(0).standard_normal(720)
    adjusted, inside, future = S.deseasonalize(noise, 24, 5)
    assert (inside == 1).all() and (future == 1).all() and (adjusted == noise).all()


# ---- R's Nelder-Mead and exponential smoothing -------------------------------------------------

def test_nelder_mead_reproduces_r_optim():
    # R's documentation of optim, its first example: optim(c(-1.2, 1), fr) with fr the Rosenbrock
    # function gives par 1.000260 1.000506, value 8.825241e-08, 195 function evaluations
    def rosenbrock(x):
        return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2

    x, value, calls, status = S.nelder_mead(rosenbrock, [-1.2, 1])
    assert [round(v, 6) for v in x] == [1.000260, 1.000506]
    assert f"{value:.6e}" == "8.825241e-08" and calls == 195 and status == 0


def test_ets_pass_by_hand():
    # SES, alpha 0.5, l0 0 on 1, 2, 3: errors 1, 1.5, 1.75; levels 0.5, 1.25, 2.125
    mse, level, slope = S._ets_pass([1.0, 2.0, 3.0], 0.5, 0.0, 1.0, 0.0, 0.0, False)
    assert mse == pytest.approx((1 + 2.25 + 3.0625) / 3) and level == 2.125 and slope == 0.0
    # Holt, alpha 0.5, beta 0.2, l0 0, b0 1 on 2, 2: e1 = 2 - 1 = 1 -> l 1.5, b 1.2;
    # e2 = 2 - 2.7 = -0.7 -> l 2.35, b 1.06
    mse, level, slope = S._ets_pass([2.0, 2.0], 0.5, 0.2, 1.0, 0.0, 1.0, True)
    assert mse == pytest.approx((1 + 0.49) / 2) and level == pytest.approx(2.35) and slope == pytest.approx(1.06)


def test_ets_forecast_formula():
    fit = S.EtsFit("A", True, 0.5, 0.1, 0.5, 0, 0, level=10.0, slope=2.0, mse=0, evaluations=1, status=0)
    np.testing.assert_allclose(fit.forecast(3), [11.0, 11.5, 11.75])  # 10 + 2 (0.5, 0.75, 0.875)
    fit.damped, fit.phi = False, 1.0
    np.testing.assert_allclose(fit.forecast(2), [12.0, 14.0])


@pytest.mark.parametrize("trend, damped", [("N", False), ("A", False), ("A", True)])
def test_fit_ets_stays_in_bounds_and_improves_the_start(trend, damped):
    rng = np.random.default_rng(3)
    y = 500 + np.cumsum(rng.normal(0.5, 5, 300))
    fit = S.fit_ets(y, trend, damped)
    assert S.ETS_LOWER["alpha"] <= fit.alpha <= S.ETS_UPPER["alpha"]
    if trend == "A":
        assert S.ETS_LOWER["beta"] <= fit.beta <= fit.alpha
    assert (S.ETS_LOWER["phi"] <= fit.phi <= S.ETS_UPPER["phi"]) if damped else fit.phi == 1.0
    start = S._ets_pass(list(y), 0.20006, 0.020096 if trend == "A" else 0.0, 0.9782 if damped else 1.0,
                        float(y[:10].mean()) if trend == "N" else fit.level0, fit.slope0, trend == "A")[0]
    assert fit.mse <= start
    mse, level, slope = S._ets_pass(list(y), fit.alpha, fit.beta, fit.phi, fit.level0, fit.slope0, trend == "A")
    assert (fit.mse, fit.level, fit.slope) == (mse, level, slope)
    assert S.fit_ets(np.full(50, 7.0)).forecast(3).tolist() == pytest.approx([7.0] * 3)
    with pytest.raises(ValueError, match="damped model needs trend='A'"):
        S.fit_ets(y, "N", True)


# ---- benchmarks --------------------------------------------------------------------------------

def test_naive_benchmarks():
    y, _ = seasonal_series(n=100, m=4, noise=0.02)
    np.testing.assert_array_equal(S.naive(y, 5), np.full(5, y[-1]))
    np.testing.assert_array_equal(S.snaive(y, 6, 4), np.concatenate([y[-4:], y[-4:-2]]))
    adjusted, _, future = S.deseasonalize(y, 4, 6)
    assert not (future == 1).all()
    np.testing.assert_allclose(S.naive2(y, 6, 4), adjusted[-1] * future)
    np.testing.assert_allclose(S.naive2(y, 3, 1), np.full(3, y[-1]))  # m = 1: Naive2 is Naive


def test_benchmark_forecasts_share_fits_and_reseasonalize():
    y, _ = seasonal_series(n=120, m=4, noise=0.05)
    out = S.benchmark_forecasts(y, 8, 4, ("naive2", "ses", "holt", "damped", "theta", "comb"))
    assert list(out) == ["naive2", "ses", "holt", "damped", "theta", "comb"]
    assert all(f.shape == (8,) and np.isfinite(f).all() for f in out.values())
    np.testing.assert_allclose(out["comb"], (out["ses"] + out["holt"] + out["damped"]) / 3)
    adjusted, _, future = S.deseasonalize(y, 4, 8)
    np.testing.assert_allclose(out["ses"], S.fit_ets(adjusted).forecast(8) * future)
    np.testing.assert_allclose(S.ses(y, 8, 4), out["ses"])
    # Theta is set to 0 where negative (M4's code): a series falling fast
    assert (S.theta(np.linspace(100, 1, 50), 200, 1) >= 0).all()
    assert (S.theta(np.linspace(100, 1, 50), 200, 1) == 0).any()


def test_unknown_names_and_bad_input():
    with pytest.raises(ValueError, match="unknown benchmark 'arima'; valid: naive, snaive, naive2, ses"):
        S.run_benchmarks([np.ones(10)], 2, 1, ["naive", "arima"], workers=1, progress=False)
    with pytest.raises(ValueError, match="unknown benchmark 'x'"):
        S.benchmark_forecasts(np.ones(10), 2, 1, ("x",))
    with pytest.raises(DataError, match="finite; got nan at position 1"):
        S.naive([1.0, np.nan, 2.0], 2)
    with pytest.raises(DataError, match=r"series 1 \(0-based\): a series must be finite"):
        S.run_benchmarks([np.ones(10), np.array([1.0, np.inf])], 2, 1, ["naive"], workers=1, progress=False)
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        S.naive(np.ones(3), 0)


def test_run_benchmarks_is_deterministic_across_processes():
    series = [seasonal_series(n=80 + 7 * k, m=4, seed=k, noise=0.05)[0] for k in range(6)]
    names = ["naive2", "snaive", "ses", "damped", "theta"]
    one = S.run_benchmarks(series, 5, 4, names, workers=1, progress=False)
    two = S.run_benchmarks(series, 5, 4, names, workers=2, progress=False, chunk_size=2)
    assert list(one) == names
    for name in names:
        assert one[name].shape == (6, 5)
        np.testing.assert_array_equal(one[name], two[name])
        np.testing.assert_array_equal(one[name][3], S.benchmark_forecasts(series[3], 5, 4, (name,))[name])
    series[4] = np.array([1.0, np.nan, 2.0])
    with pytest.raises(DataError, match=r"series 4 \(0-based\): a series must be finite; got nan at position 1"):
        S.run_benchmarks(series, 5, 4, names, workers=2, progress=False, chunk_size=2)


def test_automatic_models_need_statsforecast(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsforecast", None)
    with pytest.raises(ImportError, match=r"the M4 benchmarks auto_ets needs statsforecast: "
                                          r"pip install 'rnnkit\[forecast\]'"):
        S.run_benchmarks([np.ones(30)], 2, 1, ["naive", "auto_ets"], workers=1, progress=False)
    S.run_benchmarks([np.ones(30)], 2, 1, ["naive", "naive2", "ses", "comb"], workers=1, progress=False)


def test_automatic_models():
    pytest.importorskip("statsforecast")
    y, _ = seasonal_series(n=60, m=4, noise=0.02)
    for f in (S.auto_ets(y, 6, 4), S.auto_arima(y, 6, 4)):
        assert f.shape == (6,) and np.isfinite(f).all()
        assert np.abs(f / y[-4:][np.arange(6) % 4] - 1).max() < 0.2  # follows the season


# ---- the published M4 Hourly figures -----------------------------------------------------------

@pytest.fixture(scope="module")
def hourly():
    if not (M4 / "Hourly-train.csv.gz").is_file():
        pytest.skip("../shared/data/m4 is absent")
    train = read_m4(M4 / "Hourly-train.csv.gz")
    return train, read_m4_test(M4 / "Hourly-test.csv.gz", train, 48)


def published_check(hourly, names, exact):
    train, future = hourly
    forecasts = S.run_benchmarks(train.series, 48, 24, ["naive2", *names], workers=2, progress=False)
    table = S.benchmark_table(forecasts, future, train.series, 24)
    for name in names:
        smape, mase = S.PUBLISHED_HOURLY[name]
        got = table[name]
        if exact:
            assert (round(got["smape"], 3), round(got["mase"], 3)) == (smape, mase), name
        else:
            assert got["smape"] == pytest.approx(smape, rel=0.02), name
            assert got["mase"] == pytest.approx(mase, rel=0.02), name
            assert got["owa"] == pytest.approx(S.owa(smape, mase, *S.PUBLISHED_HOURLY["naive2"]), rel=0.02), name


def test_published_hourly_naive2_snaive_ses_theta(hourly):
    # Naive2 and sNaive are exact; SES and Theta agree to 3 decimals too (R's optimizer replicated)
    published_check(hourly, ["naive2", "snaive", "ses", "theta"], exact=True)


@pytest.mark.slow
def test_published_hourly_damped_and_comb(hourly):
    # about 30 s with 2 workers: Holt and Damped take 10 times SES's optimizer steps
    published_check(hourly, ["damped", "comb"], exact=False)
