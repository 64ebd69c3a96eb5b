"""Vectorised Magpie composition features (Ward et al., npj Comput. Mater. 2016).

Reproduces matminer's ``Stoichiometry() + ElementProperty.from_preset("magpie")
+ ValenceOrbital(props=["frac"]) + IonProperty(fast=True)`` (145 columns, same
names and order) for a whole batch at once, a few hundred times faster than
matminer's per-composition loop.  matminer is only used to load its element
tables once (with its default NaN imputation, so like matminer there are no NaNs).

Compositions are grouped by element count and every weighted sum runs over a
C-contiguous last axis in the composition's own element order, so NumPy sums in
exactly the order ``np.average`` does for matminer.  That makes results
bit-identical, which matters where cancellation leaves round-off residue (e.g.
``avg_dev`` of a property shared by all elements is ~1e-16, not 0, in matminer).
Only the p-norms may differ in the last bit: NumPy's vectorised ``pow`` is not
libm's.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa

__all__ = ["MAGPIE_FEATURE_NAMES", "magpie_features", "magpie_table"]

_P_NORMS = (0, 2, 3, 5, 7, 10)
_PROPERTIES = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
    "CovalentRadius", "Electronegativity", "NsValence", "NpValence", "NdValence",
    "NfValence", "NValence", "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled",
    "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom", "SpaceGroupNumber",
)  # fmt: skip
_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
_ORBITALS = ("s", "p", "d", "f")

MAGPIE_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"{p}-norm" for p in _P_NORMS)
    + tuple(f"MagpieData {s} {p}" for p in _PROPERTIES for s in _STATS)
    + tuple(f"frac {o} valence electrons" for o in _ORBITALS)
    + ("compound possible", "max ionic char", "avg ionic char")
)

_N_STOICH = len(_P_NORMS)
_N_ELPROP = len(_PROPERTIES) * len(_STATS)
_AMOUNT_TOL = 1e-8  # pymatgen's Composition.amount_tolerance: smaller amounts are dropped
_MAX_COMBOS = 1 << 21  # oxidation-state combinations evaluated per chunk (memory bound)


@dataclass(frozen=True)
class _Tables:
    index: dict[str, int]  # element symbol -> row
    props: np.ndarray  # (n_prop, n_el): Magpie values, NaNs imputed as matminer does
    x: np.ndarray  # (n_el,): pymatgen Pauling electronegativity (imputed like PymatgenData)
    oxi: np.ndarray  # (n_el, max_states): common oxidation states, zero padded
    n_oxi: np.ndarray  # (n_el,): number of common oxidation states


@cache
def _tables() -> _Tables:
    """Load matminer's Magpie tables and pymatgen's IonProperty data once."""
    from matminer.utils.data import MagpieData
    from pymatgen.core import Element

    magpie = MagpieData(impute_nan=True).all_elemental_props
    symbols = [e.symbol for e in Element]
    props = np.array([[magpie[p][s] for s in symbols] for p in _PROPERTIES], dtype=np.float64)

    with warnings.catch_warnings():  # pymatgen warns for every element without an X
        warnings.simplefilter("ignore", UserWarning)
        raw_x = [e.X for e in Element]
    # PymatgenData(impute_nan=True) treats falsy/NaN X as missing and uses the mean of the rest.
    x = np.array([v if v else math.nan for v in raw_x], dtype=np.float64)
    x[np.isnan(x)] = np.nanmean(x)

    states = [tuple(e.common_oxidation_states) for e in Element]
    n_oxi = np.array([len(s) for s in states], dtype=np.int64)
    oxi = np.zeros((len(states), max(1, int(n_oxi.max()))), dtype=np.float64)
    for i, s in enumerate(states):
        oxi[i, : len(s)] = s
    return _Tables({s: i for i, s in enumerate(symbols)}, props, x, oxi, n_oxi)


def _parse(
    compositions: Sequence[Mapping[str, float]], index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten mappings into CSR-style arrays (counts, element rows, amounts), keeping mapping order."""
    counts = np.fromiter((len(c) for c in compositions), dtype=np.int64, count=len(compositions))
    items = [kv for comp in compositions for kv in comp.items()]
    keys = [k for k, _ in items]
    elems = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    amounts = np.array([v for _, v in items], dtype=np.float64)
    owner = np.repeat(np.arange(len(counts)), counts)

    def fail(what: str, at: int) -> None:
        i = int(owner[at])
        raise ValueError(f"{what} in composition {i}: {dict(compositions[i])!r}")

    for at in np.flatnonzero(elems < 0):  # non-str keys such as pymatgen Elements
        elems[at] = index.get(str(keys[at]), -1)
        if elems[at] < 0:
            fail(f"unknown element {keys[at]!r}", at)
    bad = ~np.isfinite(amounts) | (amounts < -_AMOUNT_TOL)
    if bad.any():
        at = int(np.argmax(bad))
        fail(f"invalid amount {float(amounts[at])!r} for {keys[at]}", at)
    keep = np.abs(amounts) >= _AMOUNT_TOL
    if not keep.all():
        counts = np.bincount(owner[keep], minlength=len(counts))
        elems, amounts = elems[keep], amounts[keep]
    if (counts == 0).any():
        i = int(np.argmin(counts))
        raise ValueError(f"empty composition {i}: {dict(compositions[i])!r}")
    return counts, elems, amounts


def _seq_sum(a: np.ndarray) -> np.ndarray:
    """Left-to-right sum over the last axis, like Python's builtin ``sum``."""
    total = np.zeros(a.shape[:-1])
    for j in range(a.shape[-1]):
        total = total + a[..., j]
    return total


def _compound_possible(el: np.ndarray, w: np.ndarray, t: _Tables) -> np.ndarray:
    """IonProperty(fast=True): does any combination of common oxidation states,
    weighted by the raw amounts, sum to zero (within np.isclose's atol)?"""
    n, m = el.shape
    radix = t.n_oxi[el]  # (n, m)
    n_combos = radix.prod(axis=1)  # 0 when an element has no common states -> False
    out = np.zeros(n, dtype=bool)
    first = np.cumsum(n_combos) - n_combos  # index of each composition's first combination
    start = 0
    while start < n:  # chunks of whole compositions holding at most ~_MAX_COMBOS combinations
        stop = max(start + 1, int(np.searchsorted(first, first[start] + _MAX_COMBOS, "right")))
        sizes = n_combos[start:stop]
        rows = np.repeat(np.arange(start, stop), sizes)
        digit = np.arange(rows.size) - np.repeat(first[start:stop] - first[start], sizes)
        charge = np.zeros(rows.size)
        for j in range(m):  # mixed-radix decode of the combination number
            r = radix[rows, j]
            charge += t.oxi[el[rows, j], digit % r] * w[rows, j]
            digit //= r
        hit = rows[np.abs(charge) <= 1e-8]
        out[start:stop] = np.bincount(hit - start, minlength=stop - start) > 0
        start = stop
    return out


def _featurize_group(el: np.ndarray, w: np.ndarray, t: _Tables) -> np.ndarray:
    """All 145 features for compositions that share the element count m.

    el, w: (n, m) table rows and raw amounts in composition order.
    """
    n, m = el.shape
    out = np.empty((n, len(MAGPIE_FEATURE_NAMES)))

    # Stoichiometry: p-norms of atomic fractions; the 0-norm is the element count.
    n_atoms = _seq_sum(w)
    frac = w / n_atoms[:, None]
    out[:, 0] = m
    for k, p in enumerate(_P_NORMS[1:], start=1):
        out[:, k] = _seq_sum(frac**p) ** (1.0 / p)

    # ElementProperty: v is (n_prop, n, m) so every sum runs over the contiguous m axis.
    v = t.props[:, el]
    w_sum = w.sum(axis=-1)
    mean = (v * w).sum(axis=-1) / w_sum
    avg_dev = (np.abs(v - mean[..., None]) * w).sum(axis=-1) / w_sum
    vmin, vmax = v.min(axis=-1), v.max(axis=-1)
    # matminer's mode: smallest value among elements whose amount isclose() to the largest.
    w_max = w.max(axis=-1, keepdims=True)
    is_mode = np.abs(w - w_max) <= 1e-8 + 1e-5 * np.abs(w_max)
    mode = np.where(is_mode, v, np.inf).min(axis=-1)
    stats = np.stack([vmin, vmax, vmax - vmin, mean, avg_dev, mode], axis=-1)  # (n_prop, n, 6)
    out[:, _N_STOICH : _N_STOICH + _N_ELPROP] = stats.transpose(1, 0, 2).reshape(n, -1)

    # ValenceOrbital(frac): matminer's per-orbital averages are exactly the Magpie means.
    total = mean[_PROPERTIES.index("NValence")]
    for k, orb in enumerate(_ORBITALS):
        out[:, _N_STOICH + _N_ELPROP + k] = mean[_PROPERTIES.index(f"N{orb}Valence")] / total

    # IonProperty(fast=True).
    if m == 1:
        out[:, -3:] = (1.0, 0.0, 0.0)
        return out
    out[:, -3] = _compound_possible(el, w, t)
    x = t.x[el]
    max_ic = np.full(n, -np.inf)
    avg_ic = np.zeros(n)
    for i, j in itertools.combinations(range(m), 2):  # matminer's pair order
        ic = 1.0 - np.exp(-0.25 * (x[:, i] - x[:, j]) ** 2)
        max_ic = np.maximum(max_ic, ic)
        avg_ic = avg_ic + frac[:, i] * frac[:, j] * ic
    out[:, -2] = max_ic
    out[:, -1] = avg_ic
    return out


def magpie_features(compositions: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Magpie features, shape (n, 145) float64, columns as ``MAGPIE_FEATURE_NAMES``.

    Each composition maps element symbols to (not necessarily normalised)
    amounts; element order in the mapping is kept, as it is in matminer.
    """
    t = _tables()
    counts, elems, amounts = _parse(compositions, t.index)
    out = np.empty((len(counts), len(MAGPIE_FEATURE_NAMES)))
    starts = np.cumsum(counts) - counts
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf exactly where matminer has them
        for m in np.unique(counts):
            rows = np.flatnonzero(counts == m)
            flat = starts[rows, None] + np.arange(m)
            out[rows] = _featurize_group(elems[flat], amounts[flat], t)
    return out


def magpie_table(
    compositions: Sequence[Mapping[str, float]],
    keys: Sequence[object],
    key_name: str = "key",
) -> pa.Table:
    """Magpie features as an Arrow table: ``key_name`` then the 145 float64 columns."""
    if len(keys) != len(compositions):
        raise ValueError(f"{len(keys)} keys for {len(compositions)} compositions")
    features = magpie_features(compositions)
    columns = [pa.array(keys)] + [pa.array(features[:, k]) for k in range(features.shape[1])]
    return pa.Table.from_arrays(columns, names=[key_name, *MAGPIE_FEATURE_NAMES])
