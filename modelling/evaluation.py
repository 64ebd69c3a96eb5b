"""Evaluation figures (PNG bytes) and their metrics from plain arrays of targets, predicted means and stds.

The same functions serve the benchmark scripts, the notebooks and ``matlake report``: each takes ``(y, mean, std)``
and returns the figure as PNG bytes together with the numbers it shows, so a figure and the metric rows stored
beside it can never disagree. Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, which touches
no global pyplot state and needs no display.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .metrics import confidence_curve, regression_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIGMA_LEVELS = (1.0, 2.0, 3.0)
"""Intervals (in predicted standard deviations) whose observed coverage is reported."""


@dataclass(frozen=True, slots=True)
class EvaluationFigure:
    """One figure: a short name (``parity``, ``confidence``, ``calibration``), a caption and the PNG bytes."""

    name: str
    title: str
    png: bytes
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """All figures and metrics of one set of predictions."""

    metrics: dict[str, float]
    figures: list[EvaluationFigure]

    def save(self, folder: Path, stem: str) -> list[Path]:
        """Write ``<stem>_<figure>.png`` for every figure and ``<stem>_metrics.json`` (for benchmark results)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for figure in self.figures:
            paths.append(folder / f"{stem}_{figure.name}.png")
            paths[-1].write_bytes(figure.png)
        paths.append(folder / f"{stem}_metrics.json")
        paths[-1].write_text(json.dumps(self.metrics, indent=1, sort_keys=True) + "\n")
        return paths

    def metric_rows(self, part: str, member: int | None = None) -> list[dict]:
        """Rows in the shape of ``model_metric`` (``part``, ``metric``, ``member``, ``value``), NaNs left out."""
        return [{"part": part, "metric": k, "member": member, "value": float(v)}
                for k, v in sorted(self.metrics.items()) if np.isfinite(v)]


def parity(y: ArrayLike, mean: ArrayLike, std: ArrayLike | None = None, *, quantity: str = "target",
           unit: str = "") -> EvaluationFigure:
    """Predicted against true values with the y = x line; coloured by predicted std when there is one."""
    y, mean, std = _arrays(y, mean, std, need_std=False)
    metrics = regression_metrics(y, mean, std)
    fig, ax = _figure()
    lo, hi = _limits(np.concatenate([y, mean]))
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", zorder=1)
    if len(y) > 3000:
        art = ax.hexbin(y, mean, gridsize=60, extent=(lo, hi, lo, hi), mincnt=1, bins="log", cmap="viridis")
        fig.colorbar(art, ax=ax, label="count")
    elif std is not None:
        art = ax.scatter(y, mean, c=std, s=10, cmap="viridis", alpha=0.8, lw=0)
        fig.colorbar(art, ax=ax, label=f"predicted std{_unit(unit)}")
    else:
        ax.scatter(y, mean, s=10, alpha=0.6, lw=0)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel=f"true {quantity}{_unit(unit)}",
           ylabel=f"predicted {quantity}{_unit(unit)}")
    ax.text(0.04, 0.96, f"MAE {metrics['mae']:.3g}\nRMSE {metrics['rmse']:.3g}\n$R^2$ {metrics['r2']:.3f}\n"
            f"n = {len(y):,}", transform=ax.transAxes, va="top", fontsize=9)
    return EvaluationFigure("parity", "Parity: predicted against true", _png(fig), metrics)


def confidence_error(y: ArrayLike, mean: ArrayLike, std: ArrayLike, *, unit: str = "",
                     steps: int = 50) -> EvaluationFigure:
    """MAE of what is left after removing the X% most uncertain predictions, beside random and error-ranked removal.

    ``confidence_gain`` = (area_random - area_std) / (area_random - area_error): 0 when the std ranks errors no
    better than chance, 1 when it ranks them exactly like the errors themselves (the oracle).
    """
    y, mean, std = _arrays(y, mean, std, need_std=True)
    curve = confidence_curve(y, mean, std, steps=steps)
    x = curve["removed_fraction"] * 100
    metrics = _confidence_metrics(y, mean, std, curve)
    area = {"random": metrics["confidence_area_random"]}
    fig, ax = _figure()
    ax.plot(x, curve["mae_random"], color="0.4", ls="--", label="random order")
    ax.plot(x, curve["mae_by_error"], color="tab:green", label="ranked by error (oracle)")
    ax.plot(x, curve["mae_by_std"], color="tab:blue", lw=2, label="ranked by predicted std")
    ax.set(xlabel="most uncertain predictions removed (%)", ylabel=f"MAE of the rest{_unit(unit)}", xlim=(0, 100),
           ylim=(0, 1.35 * max(area["random"], float(curve["mae_by_std"].max()))))
    ax.legend(loc="upper right", fontsize=9, frameon=False)
    ax.text(0.04, 0.06, f"gain {metrics['confidence_gain']:.2f}\nSpearman $\\rho$ {metrics['spearman_abs_error_std']:.2f}",
            transform=ax.transAxes, fontsize=9)
    return EvaluationFigure("confidence", "Confidence-error curve", _png(fig), metrics)


def calibration(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> EvaluationFigure:
    """Gaussian Q-Q plot of normalised residuals z = (y - mean) / std and the observed coverage of 1, 2, 3 sigma.

    A calibrated model gives a Q-Q slope of 1 and coverages 0.683, 0.954, 0.997; a slope above 1 means the stds are
    too small (over-confident), below 1 too large.
    """
    y, mean, std = _arrays(y, mean, std, need_std=True)
    metrics, (theory, z, levels, observed) = _calibration_metrics(y, mean, std)
    slope, intercept = metrics["qq_slope"], metrics["qq_intercept"]
    fig, (ax, bx) = _figure(ncols=2)
    lim = float(np.ceil(max(3.0, np.abs(theory).max())))
    ax.plot([-lim, lim], [-lim, lim], color="0.4", ls="--", lw=1, label="calibrated")
    ax.scatter(theory, z, s=8, alpha=0.7, lw=0, label="normalised residuals")
    ax.plot(theory, slope * theory + intercept, color="tab:red", lw=1, label=f"fit, slope {slope:.2f}")
    ax.set(xlabel="standard normal quantile", ylabel="(y - mean) / std", xlim=(-lim, lim), title="Gaussian Q-Q")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    bx.plot([0, 1], [0, 1], color="0.4", ls="--", lw=1)
    bx.plot(levels, observed, color="tab:blue", lw=2)
    bx.set(xlabel="expected coverage", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1), aspect="equal",
           title="interval coverage")
    bx.text(0.04, 0.96, "\n".join(f"{k:g}$\\sigma$: {metrics[f'coverage_{k:g}sigma']:.3f} "
                                  f"({2 * stats.norm.cdf(k) - 1:.3f})" for k in SIGMA_LEVELS),
            transform=bx.transAxes, va="top", fontsize=8)
    return EvaluationFigure("calibration", "Calibration of the predicted std", _png(fig), metrics)


def uncertainty_metrics(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> dict[str, float]:
    """The numbers of the confidence-error and calibration figures without drawing them (stored as metric rows when
    a model is trained); rows with std 0 are left out of the calibration and counted, as in :func:`evaluate`."""
    y, mean, std = _arrays(y, mean, std, need_std=True)
    if len(y) < 2:
        return {}
    metrics = _confidence_metrics(y, mean, std, confidence_curve(y, mean, std, steps=50))
    positive = std > 0
    if positive.sum() >= 2:
        metrics.update(_calibration_metrics(y[positive], mean[positive], std[positive])[0])
        if not positive.all():
            metrics["calibration_zero_std_excluded"] = float((~positive).sum())
    return metrics


def _confidence_metrics(y: np.ndarray, mean: np.ndarray, std: np.ndarray, curve: dict) -> dict[str, float]:
    area = {k: float(np.mean(curve[f"mae_{k}"])) for k in ("by_std", "random", "by_error")}
    spread = area["random"] - area["by_error"]
    return {
        "confidence_area_std": area["by_std"],
        "confidence_area_random": area["random"],
        "confidence_area_error": area["by_error"],
        "confidence_gain": (area["random"] - area["by_std"]) / spread if spread > 0 else float("nan"),
        "spearman_abs_error_std": float(stats.spearmanr(np.abs(y - mean), std).statistic),
    }


def _calibration_metrics(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[dict[str, float], tuple]:
    """Q-Q fit and coverages, plus the arrays the figure draws (sorted z, normal quantiles, interval levels)."""
    if np.any(std <= 0):
        raise ValueError("calibration needs strictly positive predicted stds")
    z = np.sort((y - mean) / std)
    theory = stats.norm.ppf((np.arange(1, len(z) + 1) - 0.5) / len(z))
    slope, intercept = np.polyfit(theory, z, 1)
    metrics: dict[str, float] = {"qq_slope": float(slope), "qq_intercept": float(intercept),
                                 "z_mean": float(z.mean()), "z_std": float(z.std(ddof=1)) if len(z) > 1 else 0.0}
    for k in SIGMA_LEVELS:
        metrics[f"coverage_{k:g}sigma"] = float(np.mean(np.abs(z) <= k))
    levels = np.linspace(0.01, 0.99, 99)  # central intervals: observed against expected coverage
    observed = np.array([np.mean(np.abs(z) <= stats.norm.ppf(0.5 + p / 2)) for p in levels])
    metrics["miscalibration_area"] = float(np.mean(np.abs(observed - levels)))
    return metrics, (theory, z, levels, observed)


def evaluate(y: ArrayLike, mean: ArrayLike, std: ArrayLike | None = None, *, quantity: str = "target",
             unit: str = "") -> Evaluation:
    """Every figure that applies: parity always; with a std, the confidence-error curve and the calibration (over
    the rows with a positive std: a forest whose trees all agree predicts std 0, which no Gaussian describes; how
    many were left out is the metric ``calibration_zero_std_excluded``)."""
    y, mean, std = _arrays(y, mean, std, need_std=False)
    figures = [parity(y, mean, std, quantity=quantity, unit=unit)]
    if std is not None and len(y) >= 2:
        figures.append(confidence_error(y, mean, std, unit=unit))
        positive = std > 0
        if positive.sum() >= 2:
            fig = calibration(y[positive], mean[positive], std[positive])
            if not positive.all():
                fig = EvaluationFigure(fig.name, fig.title, fig.png,
                                       {**fig.metrics, "calibration_zero_std_excluded": float((~positive).sum())})
            figures.append(fig)
    metrics: dict[str, float] = {}
    for f in figures:
        metrics.update(f.metrics)
    return Evaluation(metrics, figures)


# ---- helpers ----------------------------------------------------------------------------------------------------


def _arrays(y, mean, std, *, need_std: bool):
    y = np.asarray(y, dtype=np.float64).ravel()
    mean = np.asarray(mean, dtype=np.float64).ravel()
    if len(y) == 0 or len(y) != len(mean):
        raise ValueError(f"need equally long, non-empty y and mean (got {len(y)} and {len(mean)})")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(mean))):
        raise ValueError("y and mean must be finite")
    if std is None:
        if need_std:
            raise ValueError("this figure needs predicted standard deviations")
        return y, mean, None
    std = np.asarray(std, dtype=np.float64).ravel()
    if len(std) != len(y) or not np.all(np.isfinite(std)):
        raise ValueError(f"std must be {len(y)} finite values (got {len(std)})")
    return y, mean, std


def _figure(ncols: int = 1):
    # imported here: training stores uncertainty_metrics without drawing, and should not pay matplotlib's import
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * ncols, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _limits(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _unit(unit: str) -> str:
    return f" ({unit})" if unit else ""
