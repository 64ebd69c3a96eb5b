"""Cuprate compositions land in the thesis's 16 families, dopants and oxygen content aside."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import pytest
from pymatgen.core import Composition

from matlake.ingest.cuprate_families import OTHER, STUDIED_FAMILIES, CuprateFamily, classify_cuprate

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLE_CSV = SHARED_DATA / "samples" / "3dsc_mp_cuprates_lattice_tc_150.csv"

PLANES = {
    "La214 (T)": 1, "Y123": 2, "RE123": 2, "Y124": 2, "RE124": 2,
    "Tl1201": 1, "Tl1212": 2, "Tl1223": 3, "Tl2201": 1, "Tl2212": 2,
    "Hg1201": 1, "Hg1212": 2, "Hg1223": 3, "Hg2212": 2, "Bi2201": 1, "Bi2212": 2,
}  # fmt: skip

# (formula, family): the first of each family is the clean parent, the rest are doped.
FAMILY_EXAMPLES = [
    ("La2CuO4", "La214 (T)"),
    ("La1.85Sr0.15CuO4", "La214 (T)"),
    ("La1.875Ba0.125CuO4", "La214 (T)"),
    ("La1.48Nd0.4Sr0.12CuO4", "La214 (T)"),
    ("La2CuO4.05", "La214 (T)"),
    ("La2Cu0.9Li0.1O4", "La214 (T)"),
    ("YBa2Cu3O7", "Y123"),
    ("YBa2Cu3O6.95", "Y123"),
    ("Y0.8Ca0.2Ba2Cu3O7", "Y123"),
    ("YBa2Cu3O6", "Y123"),
    ("YBa2Cu2.9Zn0.1O6.9", "Y123"),
    ("YBa1.6Sr0.4Cu3O7", "Y123"),
    ("YBa1.5La0.5Cu3O7", "Y123"),
    ("Y0.5Pr0.5Ba2Cu3O7", "Y123"),
    ("NdBa2Cu3O7", "RE123"),
    ("Gd0.9Ca0.1Ba2Cu3O6.9", "RE123"),
    ("Er0.5Pr0.5Ba2Cu3O7", "RE123"),
    ("LaBa2Cu3O7", "RE123"),
    ("YBa2Cu4O8", "Y124"),
    ("Y0.9Ca0.1Ba2Cu4O8", "Y124"),
    ("DyBa2Cu4O8", "RE124"),
    ("Ho0.9Ca0.1Ba2Cu4O8", "RE124"),
    ("TlBa2CuO5", "Tl1201"),
    ("TlSrLaCuO5", "Tl1201"),
    ("Tl0.5Pb0.5Sr2CuO5", "Tl1201"),
    ("TlBa2CaCu2O7", "Tl1212"),
    ("Tl0.5Pb0.5Sr2CaCu2O7", "Tl1212"),
    ("TlSr2YCu2O7", "Tl1212"),
    ("TlBa2Ca2Cu3O9", "Tl1223"),
    ("Tl0.5Pb0.5Sr2Ca2Cu3O9", "Tl1223"),
    ("Tl2Ba2CuO6", "Tl2201"),
    ("Tl1.9Ba2CuO6.1", "Tl2201"),
    ("Tl2Ba2CaCu2O8", "Tl2212"),
    ("Tl2Ba2Ca0.8Y0.2Cu2O8", "Tl2212"),
    ("HgBa2CuO4.1", "Hg1201"),
    ("HgBa2CuO5", "Hg1201"),  # the notation's nominal oxygen, as in the thesis table
    ("HgBa1.5Sr0.5CuO4.1", "Hg1201"),
    ("Hg0.8Re0.2Ba2CuO4.2", "Hg1201"),
    ("HgBa2CaCu2O6.2", "Hg1212"),
    ("Hg0.8Tl0.2Ba2CaCu2O6.2", "Hg1212"),
    ("HgBa2Ca2Cu3O8.3", "Hg1223"),
    ("Hg0.8Pb0.2Ba2Ca2Cu3O8.3", "Hg1223"),
    ("HgBa2Ca2Cu3O8.1F0.3", "Hg1223"),
    ("Hg2Ba2YCu2O8", "Hg2212"),
    ("Hg2Ba2Y0.8Ca0.2Cu2O8", "Hg2212"),
    ("Bi2Sr2CuO6", "Bi2201"),
    ("Bi2Sr1.6La0.4CuO6.2", "Bi2201"),
    ("Bi1.8Pb0.2Sr2CuO6", "Bi2201"),
    ("Bi2Sr2CaCu2O8", "Bi2212"),
    ("Bi2Sr2CaCu2O8.2", "Bi2212"),
    ("Bi1.6Pb0.4Sr2CaCu2O8", "Bi2212"),
    ("Bi2Sr2Ca0.8Y0.2Cu2O8", "Bi2212"),
]

# (formula, a word the reason must contain)
OTHER_EXAMPLES = [
    ("MgB2", "no Cu"),
    ("LaFeAsO0.9F0.1", "no Cu"),
    ("BaFe1.8Co0.2As2", "no Cu"),
    ("FeSe", "no Cu"),
    ("Nb3Sn", "no Cu"),
    ("Cu", "no O"),
    ("CuO", "no family"),
    ("Cu2O", "no family"),
    ("Nd2CuO4", "T'"),
    ("Nd1.85Ce0.15CuO4", "T'"),
    ("Pr2CuO4", "T'"),
    ("Bi1.6Pb0.4Sr2Ca2Cu3O10", "Bi2223"),
    ("Tl2Ba2Ca2Cu3O10", "Tl2223"),
    ("HgBa2Ca3Cu4O10.2", "Hg1234"),
    ("Sr2CuO3", "no family"),
    ("CaCuO2", "no family"),
    ("La2SrCu2O6", "no family"),
    ("Y2BaCuO5", "no family"),
    ("Y2Ba4Cu7O15", "no family"),
    ("GaSr2YCu2O7", "Cu-site dopants"),
    ("RuSr2GdCu2O8", "no family"),
    ("Pb2Sr2YCu3O8", "no family"),
    ("La2Cu0.5Li0.5O4", "Cu-site dopants"),
    ("Sr2CuO2Cl2", "no family"),
    ("Bi2CuO4", "no family"),
    ("Sr2CuO2CO3", "foreign"),
]


@pytest.mark.parametrize(("formula", "family"), FAMILY_EXAMPLES)
def test_family_examples(formula: str, family: str) -> None:
    result = classify_cuprate(Composition(formula).get_el_amt_dict())
    assert result.family == family, result.reason
    assert result.n_cuo2_planes == PLANES[family]


def test_every_studied_family_has_a_clean_and_a_doped_example() -> None:
    counts = Counter(family for _, family in FAMILY_EXAMPLES)
    assert set(STUDIED_FAMILIES) == set(PLANES)
    assert len(STUDIED_FAMILIES) == 16
    assert {family for family, n in counts.items() if n >= 2} == set(STUDIED_FAMILIES)


@pytest.mark.parametrize(("formula", "reason_word"), OTHER_EXAMPLES)
def test_other_examples(formula: str, reason_word: str) -> None:
    result = classify_cuprate(Composition(formula).get_el_amt_dict())
    assert result.family == OTHER
    assert result.n_cuo2_planes is None
    assert reason_word in result.reason


def test_normalisation_and_key_types_do_not_matter() -> None:
    by_symbol = classify_cuprate({"La": 1.85, "Sr": 0.15, "Cu": 1, "O": 4})
    doubled = classify_cuprate({"La": 3.7, "Sr": 0.3, "Cu": 2, "O": 8, "Ag": 0.0})
    by_element = classify_cuprate(Composition("La1.85Sr0.15CuO4"))
    assert by_symbol == doubled == by_element
    assert by_symbol.family == "La214 (T)"


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_amounts_raise(bad: float) -> None:
    with pytest.raises(ValueError, match="Sr"):
        classify_cuprate({"La": 2, "Sr": bad, "Cu": 1, "O": 4})


def test_empty_composition_is_other() -> None:
    assert classify_cuprate({}).family == OTHER


def test_result_is_frozen() -> None:
    result = classify_cuprate({"Y": 1, "Ba": 2, "Cu": 3, "O": 7})
    assert isinstance(result, CuprateFamily)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.family = "Y124"  # type: ignore[misc]


def _tc(row: dict[str, str]) -> float:
    values = [float(row[k]) for k in ("tc_from_3dsc_icsd", "tc_from_stanev") if row.get(k)]
    return max(values, default=0.0)


@pytest.mark.shared_data
@pytest.mark.skipif(not SAMPLE_CSV.is_file(), reason=f"3DSC cuprate sample {SAMPLE_CSV} is absent")
def test_3dsc_cuprate_sample_family_counts() -> None:
    """Most known superconductors in the 3DSC sample fall into the 16 families.

    The sample is every Cu-O Materials Project structure matched to 3DSC, so it also holds
    CuO polymorphs, T' RE2CuO4, BaRECuBO5, Sr2CuO3, infinite-layer CaCuO2 and 1212 variants
    (Ga, Ru, Nb, Pb) that the thesis does not study: those must come out `other`.
    """
    with SAMPLE_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    results = [classify_cuprate(Composition(row["formula_sc"]).get_el_amt_dict()) for row in rows]
    counts = Counter(r.family for r in results)
    superconducting = [r for r, row in zip(results, rows) if _tc(row) > 0]
    sc_in_family = sum(r.family != OTHER for r in superconducting)
    in_family = len(rows) - counts[OTHER]

    print(f"\n{len(rows)} rows; {in_family} in a studied family; "
          f"{sc_in_family}/{len(superconducting)} rows with Tc > 0 in a studied family")  # fmt: skip
    for family, n in counts.most_common():
        print(f"  {family:<10} {n:>4}")

    assert len(rows) == 150
    assert set(counts) - {OTHER} <= set(STUDIED_FAMILIES)
    assert sc_in_family >= 0.6 * len(superconducting)
    assert in_family >= 50
    by_formula = {row["formula_sc"]: r.family for r, row in zip(results, rows)}
    assert by_formula["Cu1La2O4"] == "La214 (T)"
    assert by_formula["Bi2Ca1Cu2Sr2O8"] == "Bi2212"
    assert by_formula["Ba2Ca0.2Cu3Y0.8O7"] == "Y123"
    assert by_formula["Cu1O1"] == OTHER
    assert by_formula["Cu1Pr2O4"] == OTHER
