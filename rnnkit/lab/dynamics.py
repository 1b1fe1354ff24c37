r"""The lecture's exploding/vanishing experiments (1-5), measured with
:func:`rnnkit.models.probes.trace_dynamics`, the same code the Trainer's diagnostics use.

Setting (all experiments): one layer of n units, ``W_hh ~ N(0, s/n)``, ``W_ih ~ N(0, 1/n)``,
zero biases, float64, standard normal inputs, a batch of sequences per weight draw and
several independent draws (seeds).  Curves show the geometric mean over draws and the band
from the smallest to the largest draw.

Mean-field arithmetic behind the expectations: with ``W ~ N(0, s/n)``,
:math:`E\|W h\|^2 = s \|h\|^2`; a ReLU keeps about half the units, so each step multiplies
:math:`\|h\|` by about :math:`\sqrt{s/2}`, and backpropagation multiplies
:math:`\|\partial L/\partial h\|` by the same factor (:math:`W^\top` times the same masks).
The spectral radius of such a W tends to :math:`\sqrt{s}` (Girko's circular law), so a
linear RNN grows like :math:`\rho^t` and a ReLU RNN like :math:`(\rho/\sqrt 2)^t`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.lab.common import LabResult, LabSettings, geometric_mean, random_inputs, random_layer
from rnnkit.models.probes import spectral_radius, trace_dynamics
from rnnkit.plotting import log_band, pyplot, save

RELU_SCALES = (1.5, 2.0, 3.0)
SATURATION_SCALES = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)
FORGET_BIASES = (0.0, 1.0, 3.0, 5.0)


def _traces(cfg: LabSettings, mode: str, scale: float, nonlinearity: str = "relu",
            impulse: bool = False, forget_bias=None):
    """One DirectionTrace per seed, loss on the last step."""
    out = []
    for seed in range(cfg.seeds):
        layer = random_layer(mode, cfg.hidden, seed, scale, nonlinearity, forget_bias)
        x = random_inputs(cfg.steps, cfg.batch, cfg.hidden, seed, impulse)
        out.append(trace_dynamics(layer, x, loss="last").directions[0])
    return out


def _curve_rows(label: dict, curves: np.ndarray, column: str) -> list[dict]:
    return [{**label, "seed": seed, "t": t + 1, column: float(v)}
            for seed, curve in enumerate(curves) for t, v in enumerate(curve)]


def _ratio(curves: np.ndarray, first: int, last: int) -> float:
    """Geometric mean over seeds of curve[last] / curve[first] (0-based steps)."""
    return geometric_mean(curves[:, last] / curves[:, first])


# ------------------------------------------------------------------------- 1. activations
def activations(cfg: LabSettings, out_dir: Path) -> LabResult:
    """||h_t|| of ReLU RNNs with W_hh ~ N(0, s/n), s in {1.5, 2, 3}: an input at step 1
    only (the recurrence alone) and inputs at every step."""
    plt = pyplot()
    res = LabResult("activations")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    span = min(100, cfg.steps - 1)
    t = np.arange(1, cfg.steps + 1)
    rows = []
    for impulse, ax in ((True, axes[0]), (False, axes[1])):
        for s in RELU_SCALES:
            curves = np.stack([d.h_norm for d in _traces(cfg, "RNN", s, impulse=impulse)])
            log_band(ax, curves, f"s = {s:g}")
            rows += _curve_rows({"scale": s, "inputs": "first step" if impulse else "every step"}, curves, "h_norm")
            if impulse:
                ax.plot(t, curves[:, 0].mean() * np.sqrt(s / 2) ** (t - 1), ls=":", color="gray", lw=1)
                growth = _ratio(curves, 0, span)
                res.facts[f"growth_{s:g}"] = growth
                res.lines.append(f"s = {s:g}: ||h_{span + 1}|| / ||h_1|| = {growth:.3g} "
                                 f"(mean-field sqrt(s/2)^{span} = {np.sqrt(s / 2) ** span:.3g})")
            else:
                res.facts[f"noise_final_{s:g}"] = geometric_mean(curves[:, -1])
        ax.set_xlabel("step t")
        ax.set_ylabel("||h_t||")
        ax.legend()
    axes[0].set_title("input at step 1 only (dotted: sqrt(s/2)^t)")
    axes[1].set_title("inputs at every step")
    fig.suptitle(f"ReLU RNN, n = {cfg.hidden}, W_hh ~ N(0, s/n), {cfg.seeds} draws")
    res.figures.append(save(fig, out_dir / "activations.png"))
    res.tables["activations"] = rows
    res.lines.append("with inputs at every step, s = 1.5 settles at the level the inputs sustain "
                     f"(||h_T|| = {res.facts['noise_final_1.5']:.3g}) instead of reaching zero")
    return res


# --------------------------------------------------------------------------- 2. gradients
def gradients(cfg: LabSettings, out_dir: Path) -> LabResult:
    """||dL/dh_t|| for a loss on the last step, the same ReLU RNNs, inputs at every step."""
    plt = pyplot()
    res = LabResult("gradients")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    span = min(100, cfg.steps - 1)
    T = cfg.steps
    t = np.arange(1, T + 1)
    rows = []
    for s in RELU_SCALES:
        curves = np.stack([d.grad_h_norm for d in _traces(cfg, "RNN", s)])
        log_band(ax, curves, f"s = {s:g}")
        ax.plot(t, curves[:, -1].mean() * np.sqrt(s / 2) ** (T - t), ls=":", color="gray", lw=1)
        rows += _curve_rows({"scale": s}, curves, "grad_h_norm")
        ratio = _ratio(curves, T - 1, T - 1 - span)
        res.facts[f"ratio_{s:g}"] = ratio
        res.lines.append(f"s = {s:g}: ||dL/dh_{T - span}|| / ||dL/dh_{T}|| = {ratio:.3g} "
                         f"(mean-field {np.sqrt(s / 2) ** span:.3g})")
    ax.set_xlabel("step t (loss at the last step)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"ReLU RNN gradients, n = {cfg.hidden} (dotted: sqrt(s/2)^(T-t))")
    ax.legend()
    res.figures.append(save(fig, out_dir / "gradients.png"))
    res.tables["gradients"] = rows
    res.lines.append("s = 2 keeps the scale only in the mean-field sense: with one fixed W the "
                     "backward pass finds its fastest-growing directions, so draws spread widely")
    return res


# -------------------------------------------------------------------------- 3. saturation
def saturation(cfg: LabSettings, out_dir: Path) -> LabResult:
    """tanh and sigmoid RNNs as the weight scale s grows: fraction of saturated units
    (f'(a) below 5% of its peak) and how a last-step loss's gradient reaches step 1."""
    plt = pyplot()
    res = LabResult("saturation")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    summary, rows = [], []
    for nonlinearity in ("tanh", "sigmoid"):
        sat, ratios = [], []
        for s in SATURATION_SCALES:
            traces = _traces(cfg, "RNN", s, nonlinearity)
            grads = np.stack([d.grad_h_norm for d in traces])
            fraction = float(np.mean([d.saturation.mean() for d in traces]))
            ratio = _ratio(grads, cfg.steps - 1, 0)
            largest = float(max(d.h_norm.max() for d in traces))
            sat.append(fraction)
            ratios.append(ratio)
            summary.append({"nonlinearity": nonlinearity, "scale": s, "saturated_fraction": fraction,
                            "grad_ratio_first_last": ratio, "max_h_norm": largest})
            res.facts[f"{nonlinearity}_{s:g}"] = {"saturated": fraction, "ratio": ratio, "max_h": largest}
            if nonlinearity == "tanh" and s in (1.0, 16.0, 256.0):
                log_band(axes[2], grads, f"tanh, s = {s:g}")
            rows += _curve_rows({"nonlinearity": nonlinearity, "scale": s}, grads, "grad_h_norm")
        axes[0].plot(SATURATION_SCALES, sat, marker="o", label=nonlinearity)
        axes[1].plot(SATURATION_SCALES, ratios, marker="o", label=nonlinearity)
        shown = ", ".join(f"s={s:g}: {f:.0%} sat., ratio {r:.1e}" for s, f, r in zip(SATURATION_SCALES, sat, ratios))
        res.lines.append(f"{nonlinearity}: {shown}")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_xlabel("weight scale s (W_hh ~ N(0, s/n))")
        ax.legend()
    axes[0].set_ylabel("saturated fraction")
    axes[1].set_yscale("log")
    axes[1].axhline(1.0, color="gray", lw=0.8)
    axes[1].set_ylabel(f"||dL/dh_1|| / ||dL/dh_{cfg.steps}||")
    axes[2].set_xlabel("step t (loss at the last step)")
    axes[2].set_ylabel("||dL/dh_t||")
    axes[2].legend()
    fig.suptitle(f"Bounded activations, n = {cfg.hidden}, T = {cfg.steps}, inputs at every step")
    res.figures.append(save(fig, out_dir / "saturation.png"))
    res.tables["saturation"] = summary
    res.tables["saturation_curves"] = rows
    res.lines.append("small and moderate scales vanish (the largest singular value times max f' "
                     "is below 1: Pascanu, Mikolov & Bengio 2013); past the edge of chaos (tanh "
                     "s > ~2) the unsaturated units carry large weights and gradients grow although "
                     "most units are saturated (Poole et al. 2016; Chen, Pennington & Schoenholz 2018)")
    return res


# ---------------------------------------------------------------------------- 4. the LSTM
def lstm(cfg: LabSettings, out_dir: Path) -> LabResult:
    """The same probe for LSTMs (W ~ N(0, 1/n)) with forget-gate bias 0, 1, 3 and 5, beside
    a tanh RNN (s = 1) and a ReLU RNN (s = 2): dL/dc_t persists when f_t is near 1."""
    plt = pyplot()
    res = LabResult("lstm")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    T, rows, summary = cfg.steps, [], []
    for bias in FORGET_BIASES:
        traces = _traces(cfg, "LSTM", 1.0, forget_bias=bias)
        grads_c = np.stack([d.grad_c_norm for d in traces])
        grads_h = np.stack([d.grad_h_norm for d in traces])
        forget = float(np.mean([d.forget.mean() for d in traces]))
        log_band(axes[0], grads_c, f"LSTM dL/dc_t, b_f = {bias:g} (f = {forget:.2f})")
        ratio_c, ratio_h = _ratio(grads_c, T - 1, 0), _ratio(grads_h, T - 1, 0)
        res.facts[f"lstm_{bias:g}"] = {"ratio_c": ratio_c, "ratio_h": ratio_h, "forget": forget}
        summary.append({"model": f"LSTM b_f={bias:g}", "mean_forget_gate": forget,
                        "grad_c_ratio_first_last": ratio_c, "grad_h_ratio_first_last": ratio_h})
        rows += _curve_rows({"model": f"LSTM b_f={bias:g}", "state": "c"}, grads_c, "grad_norm")
        axes[1].plot(np.arange(1, T + 1), np.mean([d.forget for d in traces], axis=0), label=f"b_f = {bias:g}")
        res.lines.append(f"LSTM b_f = {bias:g}: mean f_t {forget:.3f}, ||dL/dc_1|| / ||dL/dc_{T}|| = "
                         f"{ratio_c:.3g} (mean f to the power T-1: {forget ** (T - 1):.3g}; the rest flows "
                         "back through h and the gates)")
    for label, scale, nonlinearity in (("tanh RNN, s = 1", 1.0, "tanh"), ("ReLU RNN, s = 2", 2.0, "relu")):
        grads = np.stack([d.grad_h_norm for d in _traces(cfg, "RNN", scale, nonlinearity)])
        log_band(axes[0], grads, f"{label}: dL/dh_t", color="gray" if nonlinearity == "tanh" else "black")
        ratio = _ratio(grads, T - 1, 0)
        res.facts[label] = ratio
        summary.append({"model": label, "grad_h_ratio_first_last": ratio})
        rows += _curve_rows({"model": label, "state": "h"}, grads, "grad_norm")
        res.lines.append(f"{label}: ||dL/dh_1|| / ||dL/dh_{T}|| = {ratio:.3g}")
    axes[0].set_xlabel("step t (loss at the last step)")
    axes[0].set_ylabel("gradient norm")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("mean forget gate f_t")
    axes[1].set_ylim(0, 1.02)
    axes[1].legend()
    fig.suptitle(f"The cell state as a conveyor belt, n = {cfg.hidden}, T = {T}")
    res.figures.append(save(fig, out_dir / "lstm.png"))
    res.tables["lstm"] = summary
    res.tables["lstm_curves"] = rows
    return res


# ---------------------------------------------------------------------- 5. spectral radius
def spectral(cfg: LabSettings, out_dir: Path) -> LabResult:
    """Per-step growth rate of ||h_t|| (input at step 1 only) against rho(W_hh), for linear
    and ReLU RNNs, beside the predictions log(rho) and log(rho / sqrt(2))."""
    plt = pyplot()
    res = LabResult("spectral")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    scales = np.linspace(0.5, 4.0, 8)
    draws = max(2, cfg.seeds // 3)
    start = cfg.steps // 4  # skip the transient before the dominant modes take over
    rows = []
    for nonlinearity, marker in (("identity", "o"), ("relu", "s")):
        rhos, rates = [], []
        for s in scales:
            for seed in range(draws):
                layer = random_layer("RNN", cfg.hidden, seed, float(s), nonlinearity)
                x = random_inputs(cfg.steps, cfg.batch, cfg.hidden, seed, impulse=True)
                h = trace_dynamics(layer, x).directions[0].h_norm
                t = np.arange(start, cfg.steps)
                rate = float(np.polyfit(t, np.log(h[start:]), 1)[0])  # slope of log||h_t||
                rho = spectral_radius(layer)["weight_hh_l0"]
                rhos.append(rho)
                rates.append(rate)
                predicted = np.log(rho) - (0.5 * np.log(2) if nonlinearity == "relu" else 0.0)
                rows.append({"nonlinearity": nonlinearity, "scale": float(s), "seed": seed,
                             "spectral_radius": rho, "growth_rate": rate, "predicted_rate": predicted})
        label = "linear" if nonlinearity == "identity" else "ReLU"
        ax.scatter(rhos, rates, marker=marker, label=f"{label} RNN (measured)", s=18)
        errors = [abs(r["growth_rate"] - r["predicted_rate"]) for r in rows if r["nonlinearity"] == nonlinearity]
        res.facts[f"{nonlinearity}_mean_abs_error"] = float(np.mean(errors))
        res.lines.append(f"{label} RNN: growth rate per step vs prediction, mean |error| "
                         f"{np.mean(errors):.4f} over {len(errors)} draws")
    grid = np.linspace(0.6, 2.1, 50)
    ax.plot(grid, np.log(grid), color="C0", lw=1, label="log rho (linear)")
    ax.plot(grid, np.log(grid / np.sqrt(2)), color="C1", lw=1, label="log(rho / sqrt 2) (ReLU, mean field)")
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xlabel("spectral radius rho(W_hh)")
    ax.set_ylabel("growth rate d log||h_t|| / dt")
    ax.set_title(f"Growth against spectral radius, n = {cfg.hidden}")
    ax.legend(fontsize=8)
    res.figures.append(save(fig, out_dir / "spectral.png"))
    res.tables["spectral"] = rows
    return res
