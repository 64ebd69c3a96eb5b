"""Vectorised Magpie features must match matminer's own featurisers value for value."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
from pymatgen.core import Composition

from matlake.featurestore.magpie import MAGPIE_FEATURE_NAMES, magpie_features, magpie_table

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def reference() -> MultipleFeaturizer:
    return MultipleFeaturizer(
        [
            Stoichiometry(),
            ElementProperty.from_preset("magpie"),
            ValenceOrbital(props=["frac"]),
            IonProperty(fast=True),
        ]
    )


def matminer_features(featurizer: MultipleFeaturizer, comps: Sequence[Composition]) -> np.ndarray:
    with warnings.catch_warnings():  # pymatgen warns about elements without electronegativity
        warnings.simplefilter("ignore")
        return np.array([featurizer.featurize(c) for c in comps], dtype=np.float64)


def assert_parity(ours: np.ndarray, theirs: np.ndarray, labels: Sequence[str] = ()) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg="NaN patterns differ")
    finite = ~np.isnan(theirs)
    zero = finite & (theirs == 0)
    nonzero = finite & ~zero
    np.testing.assert_allclose(ours[nonzero], theirs[nonzero], rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours[zero], 0.0, rtol=0, atol=1e-12)


HAND_WRITTEN: list[dict[str, float]] = [
    {"Fe": 2, "O": 3},
    {"Na": 1, "Cl": 1},
    {"Si": 1},
    {"Cu": 3},  # single element with a non-unit amount: mean = x*3/3
    {"Fe": 0.35, "Ni": 0.25, "Cr": 0.2, "Co": 0.15, "Mn": 0.05},
    {"Al": 0.1, "Co": 0.1, "Cr": 0.1, "Cu": 0.1, "Fe": 0.1, "Mn": 0.1, "Ni": 0.1, "Ti": 0.15, "V": 0.15},
    {"Xe": 1, "F": 4},
    {"He": 1, "Fe": 2},  # He: no electronegativity (imputed) and no common oxidation states
    {"C": 1, "H": 4, "N": 2, "O": 3, "S": 1, "Cl": 2},  # many oxidation-state combinations
    {"Ga": 0.002, "As": 0.002, "In": 0.001},  # tiny amounts: isclose tolerances are absolute
    {"Fe": 2, "O": 3, "Ni": 1e-9},  # below pymatgen's amount tolerance: dropped
    {"O": 3, "Fe": 2},  # element order differs from Fe2O3
]


def test_feature_names_match_matminer(reference: MultipleFeaturizer) -> None:
    assert len(MAGPIE_FEATURE_NAMES) == 145
    assert MAGPIE_FEATURE_NAMES == tuple(reference.feature_labels())


def test_hand_written_compositions_match_matminer(reference: MultipleFeaturizer) -> None:
    ours = magpie_features(HAND_WRITTEN)
    assert ours.shape == (len(HAND_WRITTEN), 145) and ours.dtype == np.float64
    assert_parity(ours, matminer_features(reference, [Composition(c) for c in HAND_WRITTEN]))


def test_single_composition_equals_batch_row() -> None:
    batch = magpie_features(HAND_WRITTEN)
    for i, comp in enumerate(HAND_WRITTEN):
        np.testing.assert_array_equal(magpie_features([comp])[0], batch[i])


def test_accepts_pymatgen_compositions() -> None:
    comps = [Composition(c) for c in HAND_WRITTEN]
    np.testing.assert_array_equal(magpie_features(comps), magpie_features(HAND_WRITTEN))


@pytest.mark.parametrize(
    ("comp", "message"),
    [
        ({"Fe": 2, "Xx": 3}, r"unknown element 'Xx' in composition 1: \{'Fe': 2, 'Xx': 3\}"),
        ({"Fe": -1, "O": 1}, r"invalid amount -1\.0 for Fe in composition 1"),
        ({"Fe": float("nan")}, r"invalid amount nan for Fe in composition 1"),
        ({}, r"empty composition 1"),
    ],
)
def test_bad_compositions_raise(comp: Mapping[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        magpie_features([{"Na": 1, "Cl": 1}, comp])


def test_magpie_table_layout() -> None:
    keys = [f"c{i}" for i in range(len(HAND_WRITTEN))]
    table = magpie_table(HAND_WRITTEN, keys)
    assert table.column_names == ["key", *MAGPIE_FEATURE_NAMES]
    assert all(table.schema.field(n).type == pa.float64() for n in MAGPIE_FEATURE_NAMES)
    assert table.column("key").to_pylist() == keys
    np.testing.assert_array_equal(
        np.column_stack([table.column(n).to_numpy() for n in MAGPIE_FEATURE_NAMES]),
        magpie_features(HAND_WRITTEN),
    )
    with pytest.raises(ValueError, match="keys"):
        magpie_table(HAND_WRITTEN, keys[:-1])


def _shared_compositions() -> list[Composition]:
    oqmd = SHARED_DATA / "oqmd" / "crabnet_OQMD_Formation_Enthalpy_val.csv"
    expt = SHARED_DATA / "expt" / "aviary_expt-non-metals.csv"
    with oqmd.open(newline="") as f:
        formulas = [row["formula"] for row in csv.DictReader(f)][::5]
    with expt.open(newline="") as f:
        formulas += [row["composition"] for row in csv.DictReader(f)]
    return [Composition(f) for f in formulas]


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data directory {SHARED_DATA} is absent")
def test_parity_with_matminer_on_shared_data(reference: MultipleFeaturizer) -> None:
    comps = _shared_compositions()
    assert len(comps) >= 10_000
    mappings = [{el.symbol: amt for el, amt in c.items()} for c in comps]
    assert_parity(magpie_features(mappings), matminer_features(reference, comps))
