"""Estimate Cu-O distances of cuprates from lattice parameters (thesis ch. 3, eq. 3.1).

SuperCon records Tc and at best the lattice parameters, not atomic positions, so the
in-plane and apical Cu-O distances are estimated from a, b and c:

- In-plane: the CuO2 square lattice makes the Cu-Cu spacing twice the Cu-O bond, so
  d_in = a_p / 2 with a_p the primitive square edge. Cells come in two kinds: the simple
  cell (a ~ 3.8-3.95 A, e.g. P4/mmm, I4/mmm, Pmmm Y123) and the sqrt2 x sqrt2 cell rotated
  by 45 degrees (a ~ 5.3-5.5 A, e.g. Bmab/Cmce La2CuO4, Fmmm/Amaa Bi2212), for which
  d_in = a / (2 sqrt 2). The a/b ratio cannot tell them apart (both are ~1), and space
  group symbols overlap (I4/mmm vs I4/mcm cells, Pmmm vs Cmmm), so the kind is decided by
  which division gives a physical Cu-O bond (1.80-2.10 A). We average a and b, because the
  measured in-plane distance averages the bonds along both axes; for tetragonal cells this is
  exactly the thesis's a/2. The space group or crystal system is used to refuse cells that
  are neither tetragonal nor orthorhombic, where no single edge spans the CuO2 square.
- Apical: per family, d_apical = alpha * c + beta * a + gamma, fitted with a Huber loss so
  that a few bad reference structures (x-ray oxygen positions, mislabelled phases) do not
  drag the line.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import HuberRegressor

__all__ = ["Calibration", "crystal_system", "fit_family_calibration", "in_plane_from_lattice"]

CU_O_BOND_RANGE = (1.80, 2.10)
HUBER_EPSILON = 1.35
MIN_POINTS = 3

_CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
_FIRST_NUMBER = (1, 3, 16, 75, 143, 168, 195)  # first space group number of each system


def crystal_system(spacegroup_or_crystal_system: str | int) -> str:
    """Crystal system from a name, a space group number or a Hermann-Mauguin symbol.

    Parsed by hand so that non-standard settings common in cuprate papers (Bmab, Abma,
    Amaa, A2aa) work as well as standard ones.
    """
    value = spacegroup_or_crystal_system
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 1 <= value <= 230:
            raise ValueError(f"space group number must be 1-230, got {value}")
        return _CRYSTAL_SYSTEMS[sum(value >= first for first in _FIRST_NUMBER) - 1]
    text = str(value).strip()
    if text.lower() in _CRYSTAL_SYSTEMS:
        return text.lower()
    if text.isdigit():
        return crystal_system(int(text))
    symbol = re.sub(r"_\d", "", text.replace(" ", ""))  # drop screw-axis subscripts
    if not re.fullmatch(r"[PABCIFR][-0-9/a-z]+", symbol):
        raise ValueError(f"not a crystal system or Hermann-Mauguin symbol: {value!r}")
    tokens = [t.lstrip("-") for t in re.findall(r"-?\d(?:/[a-z])?|[a-z]", symbol[1:])]
    if not tokens:
        raise ValueError(f"not a crystal system or Hermann-Mauguin symbol: {value!r}")
    if tokens[0].startswith("6"):
        return "hexagonal"
    if tokens[0].startswith("3"):
        return "trigonal"
    if len(tokens) > 1 and tokens[1].startswith("3"):
        return "cubic"
    if tokens[0].startswith("4"):
        return "tetragonal"
    if tokens in (["1"], ["1"] * 3):
        return "triclinic"
    if len(tokens) == 3 and "1" not in tokens:  # full monoclinic symbols read "P 1 2/m 1"
        return "orthorhombic"
    return "monoclinic"


def in_plane_from_lattice(a: float, b: float, spacegroup_or_crystal_system: str | int) -> float:
    """In-plane Cu-O distance (A) from the in-plane lattice parameters a and b (A)."""
    system = crystal_system(spacegroup_or_crystal_system)
    if system not in ("tetragonal", "orthorhombic"):
        raise ValueError(f"in-plane estimate needs a tetragonal or orthorhombic cell, got {system}")
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ValueError(f"lattice parameters must be positive and finite, got a={a}, b={b}")
    edge = (a + b) / 2
    low, high = CU_O_BOND_RANGE
    for divisor in (2.0, 2.0 * math.sqrt(2.0)):
        if low <= edge / divisor <= high:
            return edge / divisor
    raise ValueError(
        f"a={a}, b={b}: neither a simple ({edge / 2:.3f} A) nor a sqrt2 x sqrt2 cell "
        f"({edge / (2 * math.sqrt(2)):.3f} A) gives a Cu-O bond in {CU_O_BOND_RANGE} A"
    )


@dataclass(frozen=True)
class Calibration:
    """d_apical = alpha * c + beta * a + gamma for one family; mae/rmse on the fitted rows (A)."""

    family: str
    alpha: float
    beta: float
    gamma: float
    n: int
    mae: float
    rmse: float

    def predict(self, a: ArrayLike, c: ArrayLike) -> np.ndarray | float:
        """Apical distance (A) from a and c (A); a scalar for scalar input."""
        result = self.alpha * np.asarray(c, dtype=float) + self.beta * np.asarray(a, dtype=float) + self.gamma
        return float(result) if result.ndim == 0 else result


def _columns(family: str, a: ArrayLike, c: ArrayLike, d_apical: ArrayLike) -> np.ndarray:
    try:
        data = [np.asarray(x, dtype=float).ravel() for x in (c, a, d_apical)]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{family}: a, c and d_apical must be numeric: {err}") from err
    lengths = {len(x) for x in data}
    if len(lengths) != 1:
        raise ValueError(f"{family}: a, c and d_apical differ in length ({[len(x) for x in data]})")
    table = np.column_stack(data)
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{family}: a, c and d_apical must be finite")
    if len(table) < MIN_POINTS:
        raise ValueError(f"{family}: need at least {MIN_POINTS} reference rows to fit 3 parameters, got {len(table)}")
    return table


def _standardise(x: np.ndarray, family: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale (c, a); refuse designs where c and a cannot both be resolved."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    if np.any(scale <= 1e-9 * np.maximum(np.abs(mean), 1.0)):
        raise ValueError(f"{family}: degenerate inputs, a or c does not vary across the reference rows")
    z = (x - mean) / scale
    singular = np.linalg.svd(z, compute_uv=False)
    if singular[-1] <= 1e-6 * singular[0]:
        raise ValueError(f"{family}: degenerate inputs, a and c are collinear so alpha and beta are not identifiable")
    return z, mean, scale


def fit_family_calibration(family: str, a: ArrayLike, c: ArrayLike, d_apical: ArrayLike) -> Calibration:
    """Fit eq. 3.1 for one family with a Huber loss; raises ValueError naming the family."""
    table = _columns(family, a, c, d_apical)
    z, mean, scale = _standardise(table[:, :2], family)
    target = table[:, 2]
    # Standardised inputs make the tiny ridge penalty (alpha) scale-free; it only steadies
    # the optimiser when n is close to the 3 fitted parameters.
    model = HuberRegressor(epsilon=HUBER_EPSILON, alpha=1e-6, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z, target)
    coef = model.coef_ / scale
    gamma = float(model.intercept_ - coef @ mean)
    residual = table[:, :2] @ coef + gamma - target
    return Calibration(
        family=family,
        alpha=float(coef[0]),
        beta=float(coef[1]),
        gamma=gamma,
        n=len(table),
        mae=float(np.mean(np.abs(residual))),
        rmse=float(np.sqrt(np.mean(residual**2))),
    )
