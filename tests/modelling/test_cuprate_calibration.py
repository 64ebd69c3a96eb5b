"""Lattice-parameter estimates of the in-plane and apical Cu-O distances."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matlake.featurestore.cuprate_geometry import cu_o_distances, summarise
from matlake.modelling.cuprate_calibration import (
    Calibration,
    crystal_system,
    fit_family_calibration,
    in_plane_from_lattice,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CUPRATE_CIFS = SHARED_DATA / "cuprates"

TRUE_ALPHA, TRUE_BETA, TRUE_GAMMA = 0.15, -0.40, 2.10


def synthetic(n: int = 40, outliers: int = 6, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Rows of d = 0.15 c - 0.40 a + 2.10 + noise, the first `outliers` shifted by +0.4 A."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(11.0, 13.0, n)
    a = rng.uniform(3.7, 4.0, n)
    d = TRUE_ALPHA * c + TRUE_BETA * a + TRUE_GAMMA + rng.normal(0.0, 0.005, n)
    d[:outliers] += 0.4
    return a, c, d


@pytest.mark.parametrize(
    ("a", "b", "group", "expected"),
    [
        (3.80, 3.80, "I4/mmm", 1.90),  # T-La2CuO4, simple cell
        (3.82, 3.89, "Pmmm", (3.82 + 3.89) / 4),  # Y123: bonds along a and b both count
        (5.356, 5.543, "Cmce", (5.356 + 5.543) / (4 * math.sqrt(2))),  # LTO La2CuO4
        (5.35, 5.40, "Bmab", 5.375 / (2 * math.sqrt(2))),  # non-standard setting
        (5.41, 5.42, 69, 5.415 / (2 * math.sqrt(2))),  # Fmmm Bi2212 by number
        (3.86, 3.86, "tetragonal", 1.93),
    ],
)
def test_in_plane_from_lattice(a: float, b: float, group: str | int, expected: float) -> None:
    assert in_plane_from_lattice(a, b, group) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("a", "b", "group", "match"),
    [
        (3.8, 3.8, "P2_1/c", "monoclinic"),
        (3.8, 3.8, "R-3m", "trigonal"),
        (3.8, 3.8, "triclinic", "triclinic"),
        (10.0, 10.0, "P4/mmm", "neither"),
        (-3.8, 3.8, "P4/mmm", "positive"),
        (3.8, 3.8, "not a group", "Hermann-Mauguin"),
    ],
)
def test_in_plane_from_lattice_refuses(a: float, b: float, group: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        in_plane_from_lattice(a, b, group)


@pytest.mark.parametrize(
    ("group", "system"),
    [
        ("P4/mmm", "tetragonal"), ("I4/mmm", "tetragonal"), ("P-4m2", "tetragonal"), ("I4_1/amd", "tetragonal"),
        ("Pmmm", "orthorhombic"), ("Cmce", "orthorhombic"), ("Bmab", "orthorhombic"), ("Abma", "orthorhombic"),
        ("A2aa", "orthorhombic"), ("Pna2_1", "orthorhombic"), ("P2_12_12", "orthorhombic"),
        ("P 2/m 2/m 2/m", "orthorhombic"), ("P2_1/c", "monoclinic"), ("P 1 2_1/c 1", "monoclinic"),
        ("Cm", "monoclinic"), ("P-1", "triclinic"), ("R-3m", "trigonal"), ("P6_3/mmc", "hexagonal"),
        ("Pm-3m", "cubic"), ("P4_332", "cubic"), (64, "orthorhombic"), (139, "tetragonal"), ("47", "orthorhombic"),
    ],
)  # fmt: skip
def test_crystal_system(group: str | int, system: str) -> None:
    assert crystal_system(group) == system


def test_huber_recovers_coefficients_despite_outliers() -> None:
    a, c, d = synthetic()
    cal = fit_family_calibration("Y123", a, c, d)
    assert isinstance(cal, Calibration)
    assert (cal.family, cal.n) == ("Y123", 40)
    assert cal.alpha == pytest.approx(TRUE_ALPHA, abs=0.01)
    assert cal.beta == pytest.approx(TRUE_BETA, abs=0.05)

    ols = np.linalg.lstsq(np.column_stack([c, a, np.ones_like(c)]), d, rcond=None)[0]
    truth = np.array([TRUE_ALPHA, TRUE_BETA, TRUE_GAMMA])
    huber = np.array([cal.alpha, cal.beta, cal.gamma])
    clean = slice(6, None)
    huber_err = np.abs(cal.predict(a[clean], c[clean]) - d[clean]).mean()
    ols_err = np.abs(np.column_stack([c, a, np.ones_like(c)])[clean] @ ols - d[clean]).mean()
    assert np.abs(huber - truth)[:2].sum() < 0.2 * np.abs(ols - truth)[:2].sum()
    assert huber_err < 0.01 < ols_err


def test_exact_data_fit_and_metrics() -> None:
    a, c, d = synthetic(n=12, outliers=0)
    d = TRUE_ALPHA * c + TRUE_BETA * a + TRUE_GAMMA
    cal = fit_family_calibration("Hg1201", a, c, d)
    assert (cal.alpha, cal.beta, cal.gamma) == pytest.approx((TRUE_ALPHA, TRUE_BETA, TRUE_GAMMA), abs=1e-3)
    assert 0.0 <= cal.mae <= cal.rmse < 1e-3


def test_predict_scalar_and_array() -> None:
    cal = Calibration("La214 (T)", alpha=0.1, beta=0.2, gamma=0.3, n=5, mae=0.0, rmse=0.0)
    assert cal.predict(3.8, 13.2) == pytest.approx(0.1 * 13.2 + 0.2 * 3.8 + 0.3)
    assert isinstance(cal.predict(3.8, 13.2), float)
    np.testing.assert_allclose(cal.predict([3.8, 3.9], [13.2, 13.3]), [2.38, 2.41])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.alpha = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("a", "c", "d", "match"),
    [
        ([3.8, 3.9], [13.1, 13.2], [2.4, 2.5], "at least 3"),
        ([3.8, 3.9, 3.85], [13.1, 13.2], [2.4, 2.5, 2.45], "differ in length"),
        ([3.8, 3.8, 3.8, 3.8], [13.1, 13.2, 13.3, 13.4], [2.4, 2.5, 2.45, 2.5], "does not vary"),
        ([3.80, 3.82, 3.84, 3.86], [13.0, 13.1, 13.2, 13.3], [2.4, 2.5, 2.45, 2.5], "collinear"),
        ([3.8, 3.9, float("nan")], [13.1, 13.2, 13.3], [2.4, 2.5, 2.45], "finite"),
        (["x", 3.9, 3.8], [13.1, 13.2, 13.3], [2.4, 2.5, 2.45], "numeric"),
    ],
)
def test_bad_inputs_raise_naming_family(a: list, c: list, d: list, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        fit_family_calibration("Tl2212", a, c, d)
    assert "Tl2212" in str(info.value)


@pytest.mark.shared_data
@pytest.mark.skipif(not CUPRATE_CIFS.is_dir(), reason=f"shared cuprate CIFs {CUPRATE_CIFS} are absent")
def test_in_plane_estimate_matches_shared_structures() -> None:
    """a/2 (or a/2sqrt2) from the conventional cell matches the measured in-plane bond."""
    checked = 0
    print(f"\n{'file':<34} {'group':<8} {'a':>6} {'b':>6} {'estimate':>8} {'measured':>8}")
    for path in sorted(CUPRATE_CIFS.glob("*.cif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
            analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
            lattice = analyzer.get_conventional_standard_structure().lattice
        group = analyzer.get_space_group_symbol()
        if analyzer.get_crystal_system() not in ("tetragonal", "orthorhombic"):
            print(f"{path.name:<34} {group:<8} skipped ({analyzer.get_crystal_system()})")
            continue
        a, b, _ = sorted(lattice.abc)  # the long axis is the stacking axis
        estimate = in_plane_from_lattice(a, b, group)
        measured, _ = summarise(cu_o_distances(structure))
        print(f"{path.name:<34} {group:<8} {a:6.3f} {b:6.3f} {estimate:8.3f} {measured:8.3f}")
        assert estimate == pytest.approx(measured, abs=0.03), path.name
        checked += 1
    assert checked >= 8
