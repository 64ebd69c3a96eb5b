"""matlake.ingest.formulas: dialects, one key per composition, reason codes, and the real source files."""

from __future__ import annotations

import csv
import math
import pickle
from collections import Counter
from pathlib import Path

import pytest
from pymatgen.core import Composition, Element

from matlake.ingest.formulas import FormulaError, ParsedComposition, composition_from_amounts, parse_formula

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REASON_CODES = {
    "empty_formula", "unknown_element", "unparsable_formula", "variable_stoichiometry",
    "non_positive_amount", "non_finite_amount",
}


@pytest.mark.parametrize(
    ("text", "formula"),
    [
        ("Hf(ZnN2)3", "HfZn3N6"),
        ("Al1Sm1Tm1", "SmTmAl"),
        ("O0.555600Pr0.222200Pt0.222200", "Pr2Pt2O5"),
        ("Ga0.250000Ge0.250000Rh0.500000", "GaGeRh2"),
        ("Hg0.7Cd0.3Te", "Cd3Hg7Te10"),
        ("Ba0.4K0.6Fe2As2", "K3Ba2Fe10As10"),
        ("Ag(W3Br7)2", "AgW6Br14"),
        ("[Cu(NH3)4]SO4", "CuH12SN4O4"),
        ("{Fe}2O3", "Fe2O3"),
        ("K4[Fe(CN)6]", "K4FeC6N6"),
        ("CuSO4·5H2O", "CuH10SO9"),
        ("CuSO4*5H2O", "CuH10SO9"),
        ("CuSO4 · 5 H2O", "CuH10SO9"),
        ("Na2CO3·H2O", "Na2H2CO4"),
        ("Na2CO3·0.5H2O", "Na4H2C2O7"),
        ("  Fe2O3\t", "Fe2O3"),
        ("Fe2 O3", "Fe2O3"),
        ("Fe4O6", "Fe2O3"),
        ("LiFePO4", "LiFePO4"),
        ("O2", "O"),
        ("Fe", "Fe"),
        ("Fe0.5", "Fe"),
        ("HeNe", "HeNe"),
        ("DyTl", "DyTl"),
    ],
)
def test_dialects_give_the_canonical_formula(text, formula):
    parsed = parse_formula(text)
    assert parsed.formula == formula
    assert parsed.is_integer


def test_fields_are_consistent():
    p = parse_formula("LiFePO4")
    assert p == ParsedComposition(
        formula="LiFePO4",
        amounts={"Li": 1.0, "Fe": 1.0, "P": 1.0, "O": 4.0},
        fractions={"Li": 1 / 7, "Fe": 1 / 7, "P": 1 / 7, "O": 4 / 7},
        elements=("Fe", "Li", "O", "P"),
        chemical_system="Fe-Li-O-P",
        is_integer=True,
    )
    d = parse_formula("YBa2Cu2O6.92")
    assert not d.is_integer
    assert d.formula == "Ba0.16778523Y0.083892617Cu0.16778523O0.58053691"
    assert d.amounts == {"Ba": 0.16778523, "Y": 0.083892617, "Cu": 0.16778523, "O": 0.58053691}
    assert d.elements == ("Ba", "Cu", "O", "Y") and d.chemical_system == "Ba-Cu-O-Y"
    for q in (p, d):
        assert math.isclose(sum(q.fractions.values()), 1.0)
        assert list(q.amounts) == list(q.fractions)


@pytest.mark.parametrize(
    "spellings",
    [
        ["Pr2Pt2O5", "O0.555600Pr0.222200Pt0.222200", "Pr0.2222Pt0.2222O0.5556", "Pt2Pr2O5", "O5(PrPt)2"],
        ["Cd3Hg7Te10", "Hg0.7Cd0.3Te", "Hg1.4Cd0.6Te2", "Cd0.15Hg0.35Te0.5", "Hg0.700000Cd0.300000Te1.000000"],
        ["Fe2O3", "Fe0.4O0.6", "Fe4O6", "O3Fe2", "(FeO1.5)2", "Fe0.400000O0.600000", "Fe0.4000O0.6000"],
        ["MnN2", "N0.666700Mn0.333300", "N0.6667Mn0.3333", "Mn2N4"],
        ["CuSO4·5H2O", "CuSO4*5H2O", "CuH10SO9", "CuS(OH2)5O4", "[CuSO4]·5(H2O)"],
        ["YBa2Cu2O6.92", "Y2Ba4Cu4O13.84", "Y0.5BaCuO3.46", "Ba2YCu2O6.92"],
        ["Ca0.4Ba1.25La1.25Cu3O6.98", "Ca0.8Ba2.5La2.5Cu6O13.96", "Ca0.2Ba0.625La0.625Cu1.5O3.49"],
        ["Co35.38Zr64.62", "Zr64.62Co35.38", "Co1.769Zr3.231", "Zr0.64620000Co0.35380000"],
    ],
)
def test_spellings_of_one_composition_share_a_key(spellings):
    keys = {parse_formula(s).formula for s in spellings}
    assert len(keys) == 1, keys


def test_different_compositions_get_different_keys():
    texts = [
        "Fe2O3", "Fe3O4", "FeO", "FeO2", "Hg0.7Cd0.3Te", "Hg0.8Cd0.2Te", "Hg0.71Cd0.29Te", "Fe1.37O", "Fe37O27",
        "YBa2Cu3O7", "YBa2Cu3O6.92", "YBa2Cu3O6.93", "Mg0.993300Cu0.006700", "Mg149Cu", "Mg150Cu", "CO", "Co",
        "La2CuO4", "La1.85Sr0.15CuO4", "La1.86Sr0.14CuO4",
    ]
    keys = [parse_formula(t).formula for t in texts]
    assert len(set(keys)) == len(texts), dict(zip(texts, keys))


def test_rounded_amounts_snap_but_exact_ones_do_not():
    assert parse_formula("N0.333300Mn0.666700").formula == "Mn2N"
    assert parse_formula("O0.578900Al0.210500Sm0.210500").formula == "Sm4Al4O11"
    # four decimals read as rounding: 29/31 = 0.93548 is the simplest composition that rounds to 0.9355
    assert parse_formula("Ge0.9355Si0.0645").formula == "Si2Ge29"
    assert parse_formula("Fe1.37O").formula == "Fe0.57805907O0.42194093"
    # 1/149 and 1/150 both round to 0.0067: no unique integer formula, so the key stays decimal
    assert not parse_formula("Mg0.993300Cu0.006700").is_integer


def test_integer_formulas_beyond_100_atoms_keep_their_integer_key():
    assert parse_formula("Mg149Cu").formula == "Mg149Cu"
    assert parse_formula("Ca40Ba125La125Cu300O698").is_integer
    assert not parse_formula("Ca0.4Ba1.25La1.25Cu3O6.98").is_integer


@pytest.mark.parametrize(
    "text",
    ["LiFePO4", "YBa2Cu2O6.92", "Co35.38Zr64.62", "Ce1Cu2.05Si2", "Bi0.5Pb0.25Sn0.26", "Na1Fe0.979Co0.021As1",
     "Ga1.005Sb0.995Te0.015", "Mg0.993300Cu0.006700", "La1Fe0.99975Mn0.00025As1F0.11O0.89", "Pr2Pt2O5"],
)
def test_parsing_a_key_gives_it_back(text):
    key = parse_formula(text).formula
    assert parse_formula(key).formula == key
    if parse_formula(text).is_integer:
        assert composition_from_amounts(parse_formula(text).amounts).formula == key


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty_formula"),
        ("   ", "empty_formula"),
        (None, "empty_formula"),
        (float("nan"), "empty_formula"),
        ("Xx2O", "unknown_element"),
        ("Qz", "unknown_element"),
        ("Uue", "unknown_element"),
        ("FEO", "unknown_element"),
        ("NACL", "unknown_element"),
        ("D2O", "unknown_element"),
        ("Pd1T0.81", "unknown_element"),
        ("Sr4V2.7TI0.3O9.51", "unknown_element"),
        ("Fe2O3)", "unparsable_formula"),
        ("(Fe2O3", "unparsable_formula"),
        ("(Fe]2O3", "unparsable_formula"),
        ("{Fe(O]2}", "unparsable_formula"),
        ("Fe()O", "unparsable_formula"),
        ("fe2o3", "unparsable_formula"),
        ("co", "unparsable_formula"),
        ("Fe2O3!", "unparsable_formula"),
        ("Fe1e3O", "unparsable_formula"),
        ("Fe2.O3", "unparsable_formula"),
        (".5Fe", "unparsable_formula"),
        ("Fe..2O", "unparsable_formula"),
        ("MnFeCoGe.216", "unparsable_formula"),
        ("Sr2Cu1Cl1.2O4.", "unparsable_formula"),
        ("Fe2O3·", "unparsable_formula"),
        ("·H2O", "unparsable_formula"),
        ("[Cu(H2O)4·2H2O]", "unparsable_formula"),
        ("Fe2 3O", "unparsable_formula"),
        ("Fe2O3+", "unparsable_formula"),
        ("B1Sr2Ca3Cu4O2N+3", "unparsable_formula"),
        ("Y2C2Br0.5!1.5", "unparsable_formula"),
        (5, "unparsable_formula"),
        ("La2-xSrxCuO4", "variable_stoichiometry"),
        ("YBa2Cu3O7-d", "variable_stoichiometry"),
        ("YBa2Cu3O7-δ", "variable_stoichiometry"),
        ("YBa2Cu3O7−δ", "variable_stoichiometry"),
        ("Bi2Sr2CaCu2O8+x", "variable_stoichiometry"),
        ("Bi2Sr2CaCu2O8+δ", "variable_stoichiometry"),
        ("LixCoO2", "variable_stoichiometry"),
        ("CxN", "variable_stoichiometry"),
        ("Li1+xAl", "variable_stoichiometry"),
        ("La2-2xSr2xCuO4", "variable_stoichiometry"),
        ("Fe2O3·xH2O", "variable_stoichiometry"),
        ("Hg1Sr2Ho0.333Ce0.667Cu2O6=z", "variable_stoichiometry"),
        ("Fe0O", "non_positive_amount"),
        ("Fe2O0.000", "non_positive_amount"),
        ("(FeO)0", "non_positive_amount"),
        ("0H2O", "non_positive_amount"),
        ("La2Sr0CuO4", "non_positive_amount"),
        ("Sm1Ba-1Cu3O6.94", "non_positive_amount"),
        ("Fe" + "9" * 400, "non_finite_amount"),
        ("((Fe" + "9" * 200 + ")" + "9" * 200 + ")", "non_finite_amount"),
    ],
)
def test_rejects_carry_a_reason_code_and_name_the_formula(text, code):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert info.value.reason_code == code
    assert repr(text)[:40] in str(info.value)


def test_pymatgen_accepts_what_we_reject():
    """The reasons for our own scanner: each of these parses silently, and wrongly, in pymatgen."""
    assert Composition("Fe0O").reduced_formula == "O2"
    assert Composition("D2O").reduced_formula == "H2O"
    assert Composition("(Fe]2O3").reduced_formula == "Fe2O3"
    assert Composition("Fe1e3O")["Fe"] == 1000
    assert Composition("MnFeCoGe.216")["Ge"] == pytest.approx(0.216)
    assert Composition("NACL").reduced_formula == "ALCN"
    for text in ("Fe0O", "D2O", "(Fe]2O3", "Fe1e3O", "MnFeCoGe.216", "NACL"):
        with pytest.raises(FormulaError):
            parse_formula(text)


def test_ascii_dot_is_a_decimal_point_not_an_adduct():
    assert parse_formula("CuSO4.5H2O").formula == "Cu2H4S2O11"


@pytest.mark.parametrize(
    "text",
    ["Hf(ZnN2)3", "Ag(W3Br7)2", "[Cu(NH3)4]SO4", "Ca0.4Ba1.25La1.25Cu3O6.98", "Hg0.7Cd0.3Te", "Na2CO3", "Fe2 O3",
     "Ba5B20(H2O19)2", "K6Nb2.97Ta1.03S25"],
)
def test_agrees_with_pymatgen(text):
    ours = parse_formula(text).fractions
    theirs = Composition(text).fractional_composition.get_el_amt_dict()
    assert ours.keys() == theirs.keys()
    for el, fraction in theirs.items():
        assert ours[el] == pytest.approx(fraction, abs=1e-7)


def test_composition_from_amounts():
    assert composition_from_amounts({"Fe": 2, "O": 3}).formula == "Fe2O3"
    assert composition_from_amounts({Element("Fe"): 4.0, Element("O"): 6.0}).formula == "Fe2O3"
    assert composition_from_amounts({"Pr": 2 / 9, "Pt": 2 / 9, "O": 5 / 9}).formula == "Pr2Pt2O5"
    assert composition_from_amounts({"Pr": 0.2222, "Pt": 0.2222, "O": 0.5556}).formula == "Pr2Pt2O5"
    assert composition_from_amounts({"Hg": 0.7, "Cd": 0.3, "Te": 1}) == parse_formula("Hg0.7Cd0.3Te")
    assert composition_from_amounts({"Li": 0.3333, "Co": 0.3333, "O": 0.6667}).formula == "LiCoO2"
    assert composition_from_amounts({"Li": 1 / 3, "Co": 1 / 3, "O": 2 / 3}).formula == "LiCoO2"
    amounts = Composition("YBa2Cu2O6.92").get_el_amt_dict()
    assert composition_from_amounts(amounts).formula == parse_formula("YBa2Cu2O6.92").formula


@pytest.mark.parametrize(
    ("amounts", "code"),
    [
        ({}, "empty_formula"),
        ({"Xx": 1}, "unknown_element"),
        ({"D": 2, "O": 1}, "unknown_element"),
        ({"Fe": 0, "O": 1}, "non_positive_amount"),
        ({"Fe": -1, "O": 1}, "non_positive_amount"),
        ({"Fe": math.nan, "O": 1}, "non_finite_amount"),
        ({"Fe": math.inf, "O": 1}, "non_finite_amount"),
        ({"Fe": "two"}, "unparsable_formula"),
    ],
)
def test_composition_from_amounts_rejects(amounts, code):
    with pytest.raises(FormulaError) as info:
        composition_from_amounts(amounts)
    assert info.value.reason_code == code


def test_results_are_cached_hashable_and_picklable():
    first = parse_formula("Hf(ZnN2)3")
    assert parse_formula("Hf(ZnN2)3") is first
    assert {first, parse_formula("HfZn3N6")} == {first}
    assert pickle.loads(pickle.dumps(first)) == first
    with pytest.raises(FormulaError):
        parse_formula("Xx2O")
    with pytest.raises(FormulaError) as info:
        parse_formula("Xx2O")
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.reason_code, str(again), again.formula) == ("unknown_element", str(info.value), "Xx2O")
    assert isinstance(info.value, ValueError)


REAL_FILES = {
    "oqmd/aviary_oqmd_test.csv": ("composition", 25662, {}),
    "expt/aviary_expt-non-metals.csv": ("composition", 3895, {}),
    "supercon/Supercon_data.csv": (
        "name", 16365,
        {"unknown_element": 31, "non_positive_amount": 9, "unparsable_formula": 7, "variable_stoichiometry": 2},
    ),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", sorted(REAL_FILES))
def test_real_files(relative):
    if not DATA.is_dir():
        pytest.skip(f"{DATA.resolve()} is absent: the real-data tests read the shared data folder")
    column, expected_ok, expected_rejects = REAL_FILES[relative]
    with open(DATA / relative, newline="", encoding="utf-8") as f:
        texts = [row[column] for row in csv.DictReader(f)]
    parsed, rejects, examples = 0, Counter(), {}
    for text in texts:
        try:
            p = parse_formula(text)
        except FormulaError as err:
            assert err.reason_code in REASON_CODES
            rejects[err.reason_code] += 1
            examples.setdefault(err.reason_code, text)
            continue
        parsed += 1
        assert parse_formula(p.formula).formula == p.formula
        theirs = Composition(text).fractional_composition.get_el_amt_dict()
        assert theirs.keys() == p.fractions.keys()
        assert all(abs(p.fractions[el] - f) < 1e-4 for el, f in theirs.items()), text
    print(f"{relative}: {parsed}/{len(texts)} parsed, rejects {dict(rejects)}, e.g. {examples}")
    assert (parsed, dict(rejects)) == (expected_ok, expected_rejects)
