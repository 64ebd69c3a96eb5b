"""Text-mined synthesis recipes: reading both dialects, normalising recipes, rejecting malformed ones, loading them."""

from __future__ import annotations

import copy
import gzip
import json
import lzma
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest import synthesis
from matlake.ingest.formulas import parse_formula
from matlake.ingest.framework import ingest
from matlake.ingest.records import RawRecord, RecordRejected
from matlake.ingest.synthesis import reading
from tests.conftest import shared_data

# ---- hand-written records in the 2019 solid-state format ---------------------------------------------------------


def material(formula: str, elements: dict[str, str], *, amounts_vars: dict | None = None,
             elements_vars: dict | None = None, deficient: bool | None = None, mp_id: str | None = None,
             parts: list[dict] | None = None, written: str | None = None) -> dict[str, Any]:
    return {
        "material_string": written or formula, "material_formula": written or formula,
        "composition": parts or [{"formula": formula, "elements": elements, "amount": "1"}],
        "amounts_vars": amounts_vars or {}, "elements_vars": elements_vars or {}, "additives": [],
        "oxygen_deficiency": deficient, "mp_id": mp_id,
    }


def side(*items: tuple[str, str]) -> list[dict[str, str]]:
    return [{"material": m, "amount": a} for a, m in items]


def temperature(*values: float, units: str = "C") -> dict[str, Any]:
    return {"max_value": max(values), "min_value": min(values) if len(values) > 1 else None, "values": list(values),
            "units": units}


def conditions(**given: Any) -> dict[str, Any]:
    empty = {"heating_temperature": [], "heating_time": [], "heating_atmosphere": [], "mixing_media": [],
             "mixing_device": []}
    return {**empty, **given}


BATIO3 = {
    "doi": "10.1000/TEST.1",
    "paragraph_string": "BaTiO3 powder was prepared from BaCO3 and TiO2 by the solid-state route<...>",
    "reaction_string": "1 BaCO3 + 1 TiO2 == 1 BaTiO3 + 1 CO2",
    "reaction": {"element_substitution": {}, "left_side": side(("1", "BaCO3"), ("1", "TiO2")),
                 "right_side": side(("1", "BaTiO3"), ("1", "CO2"))},
    "targets_string": ["BaTiO3"],
    "target": material("BaTiO3", {"Ba": "1", "Ti": "1", "O": "3"}, mp_id="mp-2998"),
    "precursors": [material("BaCO3", {"Ba": "1", "C": "1", "O": "3"}, mp_id="mp-5504"),
                   material("TiO2", {"Ti": "1", "O": "2"}, mp_id="mp-2657")],
    "operations": [
        {"type": "Mixing", "token": "mixed", "conditions": conditions(mixing_media=["ethanol"],
                                                                      mixing_device=["agate"])},
        {"type": "HeatingOperation", "token": "calcined", "conditions": conditions(
            heating_temperature=[temperature(1100.0, 1200.0)], heating_time=[temperature(12.0, units="h")],
            heating_atmosphere=["air"])},
        {"type": "ShapingOperation", "token": "pressed", "conditions": None},
        {"type": "HeatingOperation", "token": "sintered", "conditions": conditions(
            heating_temperature=[temperature(1350.0)], heating_time=[temperature(4.0, units="h")],
            heating_atmosphere=["hydrogen", "argon"])},
    ],
}

YBCO = {
    "doi": "10.1000/TEST.2",
    "paragraph_string": "Y1-xLaxBa2Cu3O7-δ ceramics were made from Y2O3, La2O3, CuO and BaCO3<...>",
    "reaction_string": "0.5-0.5*x Y2O3 + 0.5*x La2O3 + 3 CuO + 2 BaCO3 + 0.25 O2 == 1 Y1-xLaxBa2Cu3O7 + 2 CO2",
    "reaction": {"element_substitution": {},
                 "left_side": side(("0.5-0.5*x", "Y2O3"), ("0.5*x", "La2O3"), ("3", "CuO"), ("2", "BaCO3"),
                                   ("0.25", "O2")),
                 "right_side": side(("1", "Y1-xLaxBa2Cu3O7"), ("2", "CO2"))},
    "targets_string": ["Ba2La0.1Y0.9Cu3O7"],
    "target": material("Y1-xLaxBa2Cu3O7", {"Y": "1-x", "La": "x", "Ba": "2", "Cu": "3", "O": "7 - del_O"},
                       amounts_vars={"x": {"values": [0.1], "max_value": 0.1, "min_value": 0.1}}, deficient=True,
                       written="Y1-xLaxBa2Cu3O7-δ"),
    "precursors": [material("Y2O3", {"Y": "2", "O": "3"}), material("La2O3", {"La": "2", "O": "3"}),
                   material("CuO", {"Cu": "1", "O": "1"}), material("BaCO3", {"Ba": "1", "C": "1", "O": "3"})],
    "operations": [{"type": "HeatingOperation", "token": "annealed", "conditions": conditions(
        heating_temperature=[temperature(930.0)], heating_time=[temperature(2.0, units="h")],
        heating_atmosphere=["oxygen"])}],
}

LAFEO3 = {
    "doi": "10.1000/TEST.3",
    "paragraph_string": "LaMO3 (M = Fe, Co) were synthesised<...>",
    "reaction_string": "0.5 La2O3 + 0.5 Fe2O3 == 1 LaMO3; M = Fe",
    "reaction": {"element_substitution": {"M": "Fe"}, "left_side": side(("0.5", "La2O3"), ("0.5", "Fe2O3")),
                 "right_side": side(("1", "LaMO3"))},
    "targets_string": ["LaFeO3"],
    "target": material("LaMO3", {"La": "1", "M": "1", "O": "3"}, elements_vars={"M": ["Fe", "Co"]}),
    "precursors": [material("La2O3", {"La": "2", "O": "3"}), material("Fe2O3", {"Fe": "2", "O": "3"}),
                   material("Eu2O3", {"Eu": "2", "O": "3"})],
    "operations": [],
}

COPPER = {
    "doi": "10.1000/TEST.4",
    "paragraph_string": "Copper was reduced from CuO<...>",
    "reaction_string": "1 CuO + 1 H2 == 1 Cu + 1 H2O",
    "reaction": {"element_substitution": {}, "left_side": side(("1", "CuO"), ("1", "H2")),
                 "right_side": side(("1", "Cu"), ("1", "H2O"))},
    "targets_string": ["Cu"],
    "target": material("Cu", {"Cu": "1"}),
    "precursors": [material("CuO", {"Cu": "1", "O": "1"}), material("Cu(CH3COO)2", {"Cu": "1", "C": "4", "H": "6",
                                                                                    "O": "4"})],
    "operations": [],
}


def raw(entry: dict[str, Any], position: int = 0, file: str = "solid-state_test.json") -> RawRecord:
    return RawRecord(file=file, position=position, payload=entry, key=None)


def rejected(entry: dict[str, Any]) -> RecordRejected:
    with pytest.raises(RecordRejected) as info:
        synthesis.normalise(raw(entry))
    assert info.value.key and info.value.message
    return info.value


def changed(entry: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``entry`` with the item at a dotted path (list indices as numbers) replaced."""
    entry = copy.deepcopy(entry)
    *parents, last = path.split(".")
    node: Any = entry
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return entry


# ---- amounts and conditions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("2", {}, 2.0), ("0.167", {}, 0.167), ("x", {"x": 0.2}, 0.2), ("1-x", {"x": 0.2}, 0.8),
    ("0.5-0.5*x", {"x": 0.5}, 0.25), ("3z/2", {"z": 2.0}, 3.0), ("0.5*(1-w)*(1-x)", {"w": 0.5, "x": 0.5}, 0.125),
    ("7 - del_O", {"del_O": 0.0}, 7.0), ("x24-+127", {"x24": 3.0}, -124.0), ("δ+3.93", {"δ": 0.0}, 3.93),
    ("1-x", {}, None), (1.5, {}, 1.5),
])
def test_amounts_are_numbers_or_expressions_in_variables(text, values, expected):
    value = synthesis.evaluate_amount(text, values)
    assert value is None if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("text", ["two", "1..2", "1+", "", ")(", "nan", "inf", "1 2", "x^2", None, True])
def test_text_that_is_no_amount_raises(text):
    with pytest.raises(synthesis.AmountError):
        synthesis.evaluate_amount(text, {})


@pytest.mark.parametrize(("raw_atmospheres", "expected"), [
    (["air"], "air"), (["ambient"], "air"), (["oxygen"], "O2"), (["nitrogen"], "N2"), (["argon"], "Ar"),
    (["hydrogen"], "H2"), (["hydrogen", "nitrogen"], "H2"), (["5% H2/Ar"], "H2"), (["vacuum"], "vacuum"),
    (["air", "air"], "air"), (["air", "oxygen"], "other"), (["carbon monoxide"], "other"), ([], None),
    (["O2"], "O2"), (["flowing Ar"], "Ar"), (["Ar-5%H2"], "H2"), (["CO2"], "other"), (["H2O vapour"], "other"),
    (["O2 atmosphere"], "O2"), (["static air"], "air"), (["thermal carbon"], "other"), (["PbO"], "other"),
])
def test_atmospheres_map_to_a_small_vocabulary(raw_atmospheres, expected):
    assert synthesis.atmosphere_class(raw_atmospheres) == expected


# ---- normalising one recipe ---------------------------------------------------------------------------------------


def test_a_plain_recipe_becomes_participants_operations_and_flags():
    record = synthesis.normalise(raw(BATIO3))
    assert record.formula == "BaTiO3"
    assert record.record_id.startswith("10.1000/test.1:")
    [recipe] = record.recipes
    assert (recipe.doi, recipe.synthesis_type, recipe.target_formula) == ("10.1000/TEST.1", "solid-state", "BaTiO3")
    roles = [(p.role, p.formula_raw, p.formula, p.amount, p.mp_id) for p in recipe.participants]
    assert roles == [("target", "BaTiO3", "BaTiO3", 1.0, "mp-2998"), ("precursor", "BaCO3", "BaCO3", 1.0, "mp-5504"),
                     ("precursor", "TiO2", "TiO2", 1.0, "mp-2657"), ("byproduct", "CO2", "CO2", 1.0, None)]
    assert [p.position for p in recipe.participants] == [0, 1, 2, 3]
    mixing, calcining, pressing, sintering = recipe.operations
    assert (mixing.device, mixing.media, mixing.temperature_max_k) == ("agate", "ethanol", None)
    assert (calcining.temperature_min_k, calcining.temperature_max_k) == (1373.15, 1473.15)
    assert (calcining.time_min_h, calcining.time_max_h, calcining.atmosphere) == (12.0, 12.0, "air")
    assert calcining.conditions_raw["heating_atmosphere"] == ["air"]
    assert (pressing.type, pressing.token, pressing.conditions_raw) == ("ShapingOperation", "pressed", None)
    assert (sintering.atmosphere, sintering.atmosphere_raw) == ("H2", "hydrogen; argon")
    assert recipe.flags == {"n_precursors": 2, "has_conditions": True, "has_nonstoichiometric": False,
                            "has_organic": False, "has_pure_element_product": False, "max_temperature_k": 1623.15}


def test_the_same_record_always_gives_the_same_id():
    assert synthesis.normalise(raw(BATIO3)).record_id == synthesis.normalise(raw(copy.deepcopy(BATIO3))).record_id
    assert synthesis.normalise(raw(changed(BATIO3, "doi", "10.1000/test.1"))).record_id == \
        synthesis.normalise(raw(BATIO3)).record_id
    other = changed(BATIO3, "paragraph_string", "Another paragraph of the same paper")
    assert synthesis.normalise(raw(other)).record_id != synthesis.normalise(raw(BATIO3)).record_id


def test_a_variable_with_one_value_is_substituted_and_oxygen_deficiency_taken_as_nominal():
    [recipe] = synthesis.normalise(raw(YBCO)).recipes
    target = recipe.participants[0]
    assert parse_formula(recipe.target_formula).formula == parse_formula("Y0.9La0.1Ba2Cu3O7").formula
    assert (target.formula_raw, target.is_symbolic, target.is_nonstoichiometric) == ("Y1-xLaxBa2Cu3O7-δ", True, True)
    assert target.substitutions["amounts_vars"]["x"]["values"] == [0.1]
    y2o3 = recipe.participants[1]
    assert (y2o3.amount_raw, y2o3.amount, y2o3.is_symbolic) == ("0.5-0.5*x", pytest.approx(0.45), True)
    assert recipe.flags["has_nonstoichiometric"] is True
    assert recipe.extra["formula_source"] == "composition" and recipe.extra["variables"] == {"x": 0.1}
    assert recipe.operations[0].atmosphere == "O2"


def test_a_series_target_takes_its_first_concrete_composition_and_keeps_the_symbolic_one():
    series = changed(YBCO, "target.amounts_vars", {"x": {"values": [0.2, 0.3], "max_value": 0.3, "min_value": 0.2}})
    series["targets_string"] = ["Ba2Y0.8La0.2Cu3O7", "Ba2Y0.7La0.3Cu3O7"]
    record = synthesis.normalise(raw(series))
    [recipe] = record.recipes
    assert record.formula == "Ba2Y0.8La0.2Cu3O7"
    assert recipe.extra["formula_source"] == "targets_string"
    y2o3 = recipe.participants[1]
    assert (y2o3.amount_raw, y2o3.amount, y2o3.is_symbolic) == ("0.5-0.5*x", None, True)


def test_element_substitution_names_the_target_and_unused_precursors_are_kept():
    [recipe] = synthesis.normalise(raw(LAFEO3)).recipes
    assert recipe.target_formula == "LaFeO3"
    assert recipe.participants[0].substitutions["element_substitution"] == {"M": "Fe"}
    europium = recipe.participants[-1]
    assert (europium.role, europium.formula_raw, europium.amount_raw, europium.amount) == (
        "precursor", "Eu2O3", None, None)
    assert recipe.flags["n_precursors"] == 3 and recipe.flags["has_conditions"] is False
    assert recipe.operations == [] and recipe.flags["max_temperature_k"] is None


def test_pure_element_products_and_organic_precursors_are_flagged():
    [recipe] = synthesis.normalise(raw(COPPER)).recipes
    assert recipe.flags["has_pure_element_product"] is True
    assert recipe.flags["has_organic"] is True  # copper acetate, named but not in the reaction
    released = {**BATIO3, "reaction_string": "1 BaO2 == 1 BaO + 0.5 O2",
                "reaction": {"element_substitution": {}, "left_side": side(("1", "BaO2")),
                             "right_side": side(("1", "BaO"), ("0.5", "O2"))},
                "target": material("BaO", {"Ba": "1", "O": "1"}), "precursors": [material("BaO2", {"Ba": "1",
                                                                                                  "O": "2"})]}
    assert synthesis.normalise(raw(released)).recipes[0].flags["has_pure_element_product"] is False


def test_hydrates_and_ions_in_the_balanced_reaction():
    nitrate = {
        **BATIO3, "reaction_string": "1 Ba(NO3)2 + 1 ZrO(NO3)2·6H2O + 4 [OH-] == 1 BaZrO3 + 8 H2O + 4 [NO3-]",
        "reaction": {"element_substitution": {},
                     "left_side": side(("1", "Ba(NO3)2"), ("1", "ZrO(NO3)2·6H2O"), ("4", "[OH-]")),
                     "right_side": side(("1", "BaZrO3"), ("8", "H2O"), ("4", "[NO3-]"))},
        "target": material("BaZrO3", {"Ba": "1", "Zr": "1", "O": "3"}),
        "precursors": [material("Ba(NO3)2", {"Ba": "1", "N": "2", "O": "6"}),
                       material("ZrO(NO3)2·6H2O", {}, parts=[
                           {"formula": "ZrO(NO3)2", "elements": {"Zr": "1", "N": "2", "O": "7"}, "amount": "1"},
                           {"formula": "H2O", "elements": {"H": "2", "O": "1"}, "amount": "6"}])],
    }
    [recipe] = synthesis.normalise(raw(nitrate)).recipes
    by_raw = {p.formula_raw: p for p in recipe.participants}
    assert by_raw["[OH-]"].formula is None and by_raw["[NO3-]"].role == "byproduct"
    assert parse_formula(by_raw["ZrO(NO3)2·6H2O"].formula).formula == parse_formula("ZrN2O13H12").formula
    assert recipe.extra["balance"] == "checked"


# ---- malformed records --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("target", None, "missing_target"),
    ("target", {"material_string": "", "material_formula": "", "composition": []}, "missing_target"),
    ("reaction_string", "1 BaCO3 + 1 TiO2 -> 1 BaTiO3 + 1 CO2", "unparsable_reaction"),
    ("reaction_string", "1 BaCO3 + 1 TiO2 == ", "unparsable_reaction"),
    ("reaction_string", None, "unparsable_reaction"),
    ("reaction", None, "unparsable_reaction"),
    ("reaction.right_side", [], "unparsable_reaction"),
    ("reaction.left_side.1", {"material": "SrTiO3", "amount": "1"}, "unparsable_reaction"),
    ("reaction.left_side.1", {"amount": "1"}, "unparsable_reaction"),
    ("reaction.left_side.0.amount", "some", "non_numeric_amount"),
    ("reaction.left_side.0.amount", "", "non_numeric_amount"),
    ("reaction.left_side.0.amount", "1/0", "non_numeric_amount"),
    ("reaction.left_side.0.amount", "-1", "non_positive_amount"),
    ("reaction.left_side.0.amount", "0", "non_positive_amount"),
    ("reaction.left_side.0.amount", "-x", "non_positive_amount"),
    ("reaction.left_side.0.amount", "2", "unbalanced_reaction"),
    ("precursors", "BaCO3, TiO2", "invalid_record"),
    ("operations.1", "heated", "invalid_record"),
    ("operations.1.conditions", ["1200 C"], "invalid_record"),
])
def test_malformed_records_are_rejected_with_a_reason(path, value, reason):
    assert rejected(changed(BATIO3, path, value)).reason_code == reason


def test_a_dopant_missing_from_the_precursors_leaves_the_reaction_unbalanced():
    doped = changed(BATIO3, "target.composition.0.elements", {"Ba": "1", "Ti": "0.99", "Yb": "0.01", "O": "3"})
    doped["target"]["material_formula"] = "BaTi0.99Yb0.01O3"
    assert rejected(doped).reason_code == "unbalanced_reaction"


def test_a_target_without_any_composition_is_rejected_as_variable():
    series = changed(YBCO, "target.amounts_vars", {"x": {"values": [], "max_value": None, "min_value": None}})
    series["targets_string"] = ["Y1-xLaxBa2Cu3O7"]
    exc = rejected(series)
    assert exc.reason_code == "variable_stoichiometry" and "x" in exc.message


def test_a_record_that_is_not_an_object_is_rejected():
    with pytest.raises(RecordRejected) as info:
        synthesis.normalise(RawRecord(file="f.json", position=3, payload=["not", "a", "recipe"]))
    assert info.value.reason_code == "invalid_record"


# ---- reading files ------------------------------------------------------------------------------------------------


def write(path: Path, reactions: list[Any], *, release: str | None = "2019-12-03", opener=open) -> Path:
    document: Any = reactions if release is None else {"release_date": release, "reactions": reactions}
    with opener(path, "wt", encoding="utf-8") as fh:
        json.dump(document, fh, indent=1, ensure_ascii=False)
    return path


@pytest.mark.parametrize("opener", [open, gzip.open, lzma.open])
def test_reading_streams_every_reaction_whatever_the_compression(tmp_path, monkeypatch, opener):
    monkeypatch.setattr(reading, "_CHUNK_CHARS", 97)  # many refills, values cut at every possible place
    reactions = [BATIO3, YBCO, LAFEO3, COPPER] * 3
    records = list(synthesis.read(write(tmp_path / "solid-state.json.x", reactions, opener=opener)))
    assert [r.payload for r in records] == reactions
    assert [r.position for r in records] == list(range(12))
    assert records[1].excerpt.startswith('{"doi": "10.1000/TEST.2",') and len(records[1].excerpt) == 2000


def test_a_bare_list_and_keys_in_any_order_are_read(tmp_path):
    assert [r.payload for r in synthesis.read(write(tmp_path / "a.json", [BATIO3], release=None))] == [BATIO3]
    path = tmp_path / "b.json"
    path.write_text("\ufeff" + json.dumps({"reactions": [YBCO], "release_date": "2020-07-13", "notes": {"n": [1, 2]}}))
    assert [r.payload for r in synthesis.read(path)] == [YBCO]


@pytest.mark.parametrize("text", ['{"release_date": "x"}', '{"reactions": {}}', '"reactions"',
                                  '{"reactions": [1 2]}', '{"reactions": []} trailing'])
def test_a_file_that_is_no_recipe_file_raises(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        list(synthesis.read(path))


def test_identical_records_share_an_id_and_same_key_variants_get_a_suffix(tmp_path):
    variant = changed(BATIO3, "target.mp_id", "mp-0000")
    upper = changed(BATIO3, "doi", "10.1000/test.1")
    path = write(tmp_path / "dupes.json", [BATIO3, BATIO3, variant, upper, YBCO])
    keys = [r.key for r in synthesis.read(path)]
    assert keys[0] == keys[1] == keys[3] and keys[2] == keys[0] + "~2" and keys[4] != keys[0]


# ---- the sol-gel dialect ------------------------------------------------------------------------------------------

SOL_GEL_ZNO = {
    "doi": "10.1000/SOLGEL.1",
    "paragraph_string": "ZnO nanoparticles were prepared by a sol-gel route from zinc acetate and citric acid<...>",
    "synthesis_type": "sol-gel",
    "reaction_string": "1 Zn(CH3COO)2·2H2O + 4 O2 == 1 ZnO + 4 CO2 + 5 H2O",
    "reaction": {"element_substitution": None, "left_side": side(("1", "Zn(CH3COO)2·2H2O"), ("4", "O2")),
                 "right_side": side(("1", "ZnO"), ("4", "CO2"), ("5", "H2O"))},
    "targets_string": "ZnO",
    "target": {"material_string": "ZnO nanoparticles", "material_formula": "ZnO", "material_name": "zinc oxide",
               "phase": "wurtzite", "is_acronym": False,
               "composition": [{"formula": "ZnO", "amount": 1, "elements": {"Zn": "1", "O": "1"}}],
               "amounts_vars": None, "elements_vars": None, "additives": None, "oxygen_deficiency": None},
    "precursors": [
        {"material_string": "zinc acetate dihydrate", "material_formula": "Zn(CH3COO)2·2H2O",
         "material_name": "zinc acetate dihydrate", "phase": None, "is_acronym": False,
         "composition": [{"formula": "Zn(CH3COO)2", "amount": "1", "elements": {"Zn": "1", "C": "4", "H": "6",
                                                                                 "O": "4"}},
                         {"formula": "H2O", "amount": "2", "elements": {"H": "2", "O": "1"}}],
         "amounts_vars": {}, "elements_vars": {}, "additives": [], "oxygen_deficiency": None},
        {"material_string": "citric acid", "material_formula": "C6H8O7", "material_name": "citric acid",
         "phase": None, "is_acronym": False,
         "composition": [{"formula": "C6H8O7", "amount": "1", "elements": {"C": "6", "H": "8", "O": "7"}}],
         "amounts_vars": {}, "elements_vars": {}, "additives": [], "oxygen_deficiency": None},
    ],
    "operations": [
        {"type": "SolutionMixing", "token": "dissolved",
         "conditions": {"heating_temperature": None, "heating_time": None, "heating_atmosphere": None,
                        "mixing_device": "magnetic stirrer", "mixing_media": "ethanol"}},
        {"type": "DryingOperation", "token": "dried",
         "conditions": {"heating_temperature": {"min_value": None, "max_value": 373.0, "values": [373.0],
                                                "units": "K"},
                        "heating_time": [{"min_value": None, "max_value": 1.0, "values": [1.0], "units": "day"}],
                        "heating_atmosphere": "air", "mixing_device": None, "mixing_media": None}},
        {"type": "HeatingOperation", "token": "calcined",
         "conditions": {"heating_temperature": [{"min_value": 500, "max_value": 600, "values": [500, 600],
                                                 "units": "°C"}],
                        "heating_time": [{"min_value": 90, "max_value": 120, "values": [90, 120],
                                          "units": "minutes"}],
                        "heating_atmosphere": "flowing O2", "mixing_device": "", "mixing_media": []}},
        {"type": "HeatingOperation", "token": "annealed",
         "conditions": {"heating_temperature": [{"min_value": None, "max_value": 700, "values": [700],
                                                 "units": "C"}],
                        "heating_time": [{"min_value": None, "max_value": 2, "values": [2], "units": "hrs"},
                                         {"min_value": None, "max_value": 1, "values": [1], "units": "d"}],
                        "heating_atmosphere": ["vacuum"], "mixing_device": None, "mixing_media": None}},
    ],
}

SOL_GEL_BST = {
    "doi": "10.1000/SOLGEL.2",
    "paragraph_string": "Ba1-xSrxTiO3 (x = 0.3) gels were made<...>",
    "synthesis_type": "sol-gel",
    "reaction_string": "1-x BaCO3 + x SrCO3 + 1 TiO2 == 1 Ba1-xSrxTiO3 + 1 CO2",
    "reaction": {"element_substitution": {}, "left_side": side(("1-x", "BaCO3"), ("x", "SrCO3"), ("1", "TiO2")),
                 "right_side": side(("1", "Ba1-xSrxTiO3"), ("1", "CO2"))},
    "targets_string": None,
    "target": {"material_string": "Ba1-xSrxTiO3", "material_formula": "Ba1-xSrxTiO3", "material_name": None,
               "phase": None, "is_acronym": False,
               "composition": [{"formula": "Ba1-xSrxTiO3", "amount": "1",
                                "elements": {"Ba": "1-x", "Sr": "x", "Ti": "1", "O": "3"}}],
               "amounts_vars": {"x": ["0.3"]}, "elements_vars": {}, "additives": [], "oxygen_deficiency": "false"},
    "precursors": [
        {"material_string": "BaCO3", "material_formula": "BaCO3", "composition": [
            {"formula": "BaCO3", "amount": "1", "elements": {"Ba": "1", "C": "1", "O": "3"}}]},
        {"material_string": "SrCO3", "material_formula": "SrCO3", "composition": [
            {"formula": "SrCO3", "amount": "1", "elements": {"Sr": "1", "C": "1", "O": "3"}}]},
        {"material_string": "TiO2", "material_formula": "TiO2", "composition": [
            {"formula": "TiO2", "amount": "1", "elements": {"Ti": "1", "O": "2"}}]},
    ],
    "operations": None,
}


def test_the_sol_gel_dialect_is_read_and_normalised(tmp_path):
    path = write(tmp_path / "sol-gel_dataset_test.json", [SOL_GEL_ZNO, SOL_GEL_BST], release="2020-07-13")
    assert synthesis.dataset(path) == "sol-gel"
    zno, bst = (synthesis.normalise(r) for r in synthesis.read(path))
    [recipe] = zno.recipes
    assert (zno.formula, recipe.synthesis_type) == ("ZnO", "sol-gel")
    assert recipe.extra["material_name"] == "zinc oxide" and recipe.extra["phase"] == "wurtzite"
    assert recipe.extra["targets_string"] == ["ZnO"]
    mixing, drying, calcining, annealing = recipe.operations
    assert (mixing.device, mixing.media, mixing.atmosphere) == ("magnetic stirrer", "ethanol", None)
    assert (drying.temperature_max_k, drying.time_max_h, drying.atmosphere) == (373.0, 24.0, "air")
    assert (calcining.temperature_min_k, calcining.temperature_max_k) == (773.15, 873.15)
    assert (calcining.time_min_h, calcining.time_max_h) == (1.5, 2.0)
    assert (calcining.atmosphere, calcining.atmosphere_raw, calcining.device) == ("O2", "flowing O2", None)
    assert (annealing.time_min_h, annealing.time_max_h, annealing.atmosphere) == (2.0, 24.0, "vacuum")
    assert recipe.flags["has_organic"] is True  # citric acid and zinc acetate
    assert recipe.flags["max_temperature_k"] == 973.15
    citric = next(p for p in recipe.participants if p.formula_raw == "C6H8O7")
    assert (citric.role, citric.amount, citric.is_organic) == ("precursor", None, True)
    [bst_recipe] = bst.recipes
    assert parse_formula(bst.formula).formula == parse_formula("Ba0.7Sr0.3TiO3").formula
    assert bst_recipe.operations == [] and bst_recipe.flags["n_precursors"] == 3
    assert bst_recipe.participants[0].is_nonstoichiometric is False  # "false" as text


def test_dataset_is_read_from_the_file_when_its_name_does_not_say(tmp_path):
    assert synthesis.dataset(write(tmp_path / "recipes.json", [SOL_GEL_ZNO])) == "sol-gel"
    assert synthesis.dataset(write(tmp_path / "other.json", [BATIO3])) == "solid-state"
    (tmp_path / "broken.json").write_text('{"reactions": [{"doi": ')
    assert synthesis.dataset(tmp_path / "broken.json") == "solid-state"


# ---- through the framework ----------------------------------------------------------------------------------------


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def test_ingest_loads_recipes_and_counts_every_record(engine, tmp_path):
    bad = changed(BATIO3, "reaction.left_side.0.amount", "lots")
    bad["paragraph_string"] = "A different paragraph"
    path = write(tmp_path / "solid-state_small.json",
                 [BATIO3, YBCO, LAFEO3, COPPER, bad, BATIO3, changed(BATIO3, "doi", "10.1000/test.1")])
    [summary] = ingest(synthesis, [path], engine=engine)
    assert (summary.n_read, summary.n_inserted, summary.n_rejected) == (7, 4, 3)
    assert summary.n_read == summary.n_accepted + summary.n_rejected
    assert summary.rejects_by_reason == {"non_numeric_amount": 1, "duplicate_id": 2}
    with engine.connect() as conn:
        recipes = conn.execute(sa.text(
            "SELECT target_canonical_formula, n_precursors, n_operations, has_operations, max_temperature_k "
            "FROM recipes_current ORDER BY doi")).all()
        participants = conn.execute(sa.text("SELECT count(*) FROM recipe_participant")).scalar()
        operations = conn.execute(sa.text(
            "SELECT o.type, o.temperature_max_k, o.atmosphere FROM recipe_operation o "
            "JOIN recipes_current r ON r.recipe_id = o.recipe_id WHERE r.doi = '10.1000/TEST.1' ORDER BY o.position"
        )).all()
        rejects = conn.execute(sa.text("SELECT reason_code, record_key, message FROM ingest_reject")).all()
    canonical = [parse_formula(f).formula for f in ("BaTiO3", "Y0.9La0.1Ba2Cu3O7", "LaFeO3", "Cu")]
    assert [tuple(r) for r in recipes] == [(canonical[0], 2, 4, True, 1623.15), (canonical[1], 4, 1, True, 1203.15),
                                           (canonical[2], 3, 0, False, None), (canonical[3], 2, 0, False, None)]
    assert participants == 4 + 7 + 4 + 5
    assert [tuple(o) for o in operations] == [("Mixing", None, None), ("HeatingOperation", 1473.15, "air"),
                                              ("ShapingOperation", None, None), ("HeatingOperation", 1623.15, "H2")]
    assert all(r.reason_code and r.record_key and r.message for r in rejects)
    [again] = ingest(synthesis, [path], engine=engine)
    assert (again.n_unchanged, again.n_inserted, again.n_updated) == (4, 0, 0)


def test_a_truncated_file_is_an_unreadable_file_reject(duckdb_url, tmp_path):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    text = json.dumps({"release_date": "x", "reactions": [BATIO3, YBCO, LAFEO3]})
    path = tmp_path / "solid-state_truncated.json"
    path.write_text(text[: len(text) - 200])
    [summary] = ingest(synthesis, [path], engine=engine)
    assert (summary.n_read, summary.n_inserted, summary.rejects_by_reason) == (3, 2, {"unreadable_file": 1})


# ---- real data ----------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_the_shared_sample_is_accepted_whole(duckdb_url):
    path = shared_data("samples/synthesis_solid-state_fixture.json")
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    [summary] = ingest(synthesis, [path], engine=engine)
    assert (summary.n_read, summary.n_inserted, summary.n_rejected) == (42, 42, 0)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text(
            "SELECT reaction_string, target_canonical_formula FROM recipes_current")).tuples().all())
        n_ops = conn.execute(sa.text("SELECT count(*) FROM recipe_operation")).scalar()
    assert rows["1 ZnO + 1 Nb2O5 == 1 ZnNb2O6"] == parse_formula("ZnNb2O6").formula
    ybco = rows["0.5 Y2O3 + 3 CuO + 2 BaO == 1 Ba2YCu3O6 + 0.25 O2"]
    assert ybco == parse_formula("YBa2Cu3O6").formula
    assert n_ops == sum(len(r["operations"]) for r in json.loads(path.read_text())["reactions"])


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_whole_solid_state_release_is_accounted_for(duckdb_url):
    path = shared_data("synthesis/solid-state_dataset_2019-12-03.json.xz")
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    [summary] = ingest(synthesis, [path], engine=engine)
    assert summary.n_read == 30_031
    assert summary.n_read == summary.n_accepted + summary.n_rejected
    assert summary.n_accepted > 25_000
    with engine.connect() as conn:
        unexplained = conn.execute(sa.text(
            "SELECT count(*) FROM ingest_reject WHERE reason_code IS NULL OR reason_code = '' "
            "OR message IS NULL OR message = '' OR record_key IS NULL")).scalar()
        n_rejects = conn.execute(sa.text("SELECT count(*) FROM ingest_reject")).scalar()
        n_recipes = conn.execute(sa.text("SELECT count(*) FROM recipes_current")).scalar()
    assert unexplained == 0 and n_rejects == summary.n_rejected and n_recipes == summary.n_accepted
    assert summary.rejects_by_reason["duplicate_id"] > 2000  # the release holds most RSC papers twice
