"""One reaction record -> one recipe: target composition, participants, operations and the flags models filter on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matlake.schema.enums import ParticipantRole

from ..records import MaterialRecord, ParticipantData, RawRecord, RecipeData, RecordRejected
from .amounts import DEFICIENCY_VARIABLES, AmountError, evaluate_amount
from .conditions import has_conditions, parse_operation, value_list
from .materials import (
    ELEMENT_SYMBOLS,
    GAS_ELEMENTS,
    Material,
    best_formula,
    clean_text,
    is_ion,
    is_organic,
    parsed_formula,
    resolve_placeholders,
    species_counts,
    variable_values,
)
from .reactions import Species, check_signs, reaction_sides, worst_imbalance
from .reading import SOLID_STATE, dataset_from_name, record_key

TARGET, PRECURSOR, BYPRODUCT = (ParticipantRole.TARGET.value, ParticipantRole.PRECURSOR.value,
                               ParticipantRole.BYPRODUCT.value)
PARAGRAPH_CHARS = 2000


def normalise(raw: RawRecord) -> MaterialRecord:
    """One reaction -> one recipe record, or :class:`RecordRejected` with the reason."""
    entry = raw.payload
    if not isinstance(entry, dict):
        raise RecordRejected("invalid_record", f"record {raw.position} is not a JSON object", raw.key)
    key = raw.key or record_key(entry)
    what = f"recipe {key}"
    try:
        return _recipe(entry, key, what, raw.file)
    except RecordRejected as exc:
        exc.key = exc.key or key
        raise
    except AmountError as exc:
        raise RecordRejected("non_numeric_amount", f"{what}: {exc}", key) from None


def _recipe(entry: dict[str, Any], key: str, what: str, file: str) -> MaterialRecord:
    target_raw = entry.get("target")
    if not isinstance(target_raw, dict) or not (
        clean_text(target_raw.get("material_formula")) or clean_text(target_raw.get("material_string"))
        or target_raw.get("composition")
    ):
        raise RecordRejected("missing_target", f"{what}: the record names no target material")
    target = Material(target_raw, f"{what} target")
    precursors_raw = entry.get("precursors") or []
    if not isinstance(precursors_raw, list) or not all(isinstance(p, dict) for p in precursors_raw):
        raise RecordRejected("invalid_record", f"{what}: precursors is not a list of objects")
    precursors = [Material(p, f"{what} precursor {i}") for i, p in enumerate(precursors_raw)]
    operations_raw = entry.get("operations") or []
    if not isinstance(operations_raw, list):
        raise RecordRejected("invalid_record", f"{what}: operations is not a list")

    left, right = reaction_sides(entry, what)
    reaction = entry["reaction"]
    values = variable_values([target, *precursors])
    substitution = resolve_placeholders(reaction, [target, *precursors])

    target_names = target.names()
    target_species = next((s for s in right if s.material in target_names), right[0])
    target_species.material_ref = target
    by_name = {}
    for p in precursors:
        for name in p.names():
            by_name.setdefault(name, p)
    for s in left:
        s.material_ref = by_name.get(s.material)

    check_signs(left + right, values, what)
    formula, formula_source = _target_formula(target, values, substitution, entry.get("targets_string"), what)
    imbalance = worst_imbalance(left, right, values, substitution)
    if imbalance is not None and imbalance > 1.0:
        raise RecordRejected("unbalanced_reaction",
                             f"{what}: {entry['reaction_string']!r} does not balance (worst element off by "
                             f"{imbalance:.1f} times its rounding tolerance)")

    participants = _participants(target, target_species, formula, left, right, precursors, values, substitution,
                                 reaction)
    operations = [parse_operation(i, op, what) for i, op in enumerate(operations_raw)]
    temperatures = [op.temperature_max_k for op in operations if op.temperature_max_k is not None]
    flags = {
        "n_precursors": len(precursors),
        "has_conditions": any(has_conditions(op) for op in operations),
        "has_nonstoichiometric": any(p.is_nonstoichiometric for p in participants),
        "has_organic": any(p.is_organic for p in participants),
        "has_pure_element_product": any(_is_pure_element_product(p) for p in participants),
        "max_temperature_k": max(temperatures, default=None),
    }
    synthesis_type = clean_text(entry.get("synthesis_type")) or dataset_from_name(Path(file).name) or SOLID_STATE
    paragraph = clean_text(entry.get("paragraph_string"))
    extra = {
        "formula_source": formula_source,
        "target_material_string": clean_text(target_raw.get("material_string")),
        "targets_string": value_list(entry.get("targets_string")) or None,
        "element_substitution": dict(substitution) or None,
        "variables": dict(sorted((k, v) for k, v in values.items() if k not in DEFICIENCY_VARIABLES)) or None,
        "additives": target.additives or None,
        "balance": "checked" if imbalance is not None else "unchecked",
        **{k: target_raw[k] for k in ("material_name", "phase", "is_acronym") if target_raw.get(k) is not None},
    }
    recipe = RecipeData(
        doi=clean_text(entry.get("doi")),
        synthesis_type=synthesis_type,
        target_formula=formula,
        reaction_string=entry["reaction_string"],
        paragraph_excerpt=paragraph[:PARAGRAPH_CHARS] if paragraph else None,
        participants=participants,
        operations=operations,
        flags=flags,
        extra={k: v for k, v in extra.items() if v is not None},
    )
    return MaterialRecord(record_id=key, formula=formula, recipes=[recipe])


def _target_formula(target: Material, values: Mapping[str, float], substitution: Mapping[str, str],
                    targets_string: Any, what: str) -> tuple[str, str]:
    """The recipe's composition and where it came from (see the module docstring)."""
    formula = best_formula(target, values, substitution)
    if formula is not None:
        return formula, "material_formula" if formula == target.formula_text else "composition"
    candidate = _concrete_target(target, substitution, targets_string)
    if candidate is not None:
        return candidate, "targets_string"
    unresolved = sorted(target.variables - set(values)) or sorted(
        {el for _, _, els in target.parts for el in els if substitution.get(el, el) not in ELEMENT_SYMBOLS})
    raise RecordRejected("variable_stoichiometry",
                         f"{what}: target {target.formula_text!r} has no single composition "
                         f"(no value for {', '.join(unresolved) or 'its amounts'}) and no concrete targets_string")


def _concrete_target(target: Material, substitution: Mapping[str, str], targets_string: Any) -> str | None:
    """The first concrete target with all of the target's elements, else the first with some of them, else any.

    Series list their end members too (``x = 0`` drops an element), so a full match is preferred.
    """
    elements = {substitution.get(el, el) for _, _, els in target.parts for el in els}
    within = first = None
    for text in value_list(targets_string):
        parsed = parsed_formula(text) if isinstance(text, str) else None
        if parsed is None:
            continue
        found = set(parsed.elements)
        if found == elements:
            return text
        if within is None and found <= elements:
            within = text
        first = first or text
    return within or first


def _participants(target: Material, target_species: Species, target_formula: str, left: list[Species],
                  right: list[Species], precursors: list[Material], values: Mapping[str, float],
                  substitution: Mapping[str, str], reaction: Mapping[str, Any]) -> list[ParticipantData]:
    rows: list[ParticipantData] = []
    target_amounts = target.element_amounts(values, substitution)
    rows.append(ParticipantData(
        role=TARGET, position=0, formula_raw=target.formula_text or target_species.material,
        formula=target_formula, amount_raw=str(target_species.amount_raw),
        amount=evaluate_amount(target_species.amount_raw, values),
        is_symbolic=bool(target_species.variables or target.variables - DEFICIENCY_VARIABLES),
        is_organic=is_organic(target.formula_text, target_amounts),
        is_nonstoichiometric=target.is_nonstoichiometric(),
        substitutions=_substitutions(target, reaction.get("element_substitution")), mp_id=target.mp_id,
    ))
    used = set()
    for s in left:
        rows.append(_participant(PRECURSOR, len(rows), s, s.material_ref, values, substitution))
        if s.material_ref is not None:
            used.add(id(s.material_ref))
    for p in precursors:
        if id(p) not in used:
            rows.append(_participant(PRECURSOR, len(rows), None, p, values, substitution))
    for s in right:
        if s is not target_species:
            rows.append(_participant(BYPRODUCT, len(rows), s, None, values, substitution))
    return rows


def _participant(role: str, position: int, species: Species | None, material: Material | None,
                 values: Mapping[str, float], substitution: Mapping[str, str]) -> ParticipantData:
    """A precursor or byproduct; ``species`` is None for a named precursor that the reaction leaves out."""
    if material is not None:
        formula_raw = material.formula_text or (species.material if species else "")
        formula = best_formula(material, values, substitution)
        amounts = material.element_amounts(values, substitution)
        symbolic = bool(material.variables - DEFICIENCY_VARIABLES)
        nonstoichiometric = material.is_nonstoichiometric()
        extra = _substitutions(material, None)
        mp_id = material.mp_id
    else:
        formula_raw = species.material
        ion = is_ion(formula_raw)
        formula = None if ion else formula_raw if parsed_formula(formula_raw) is not None else None
        counts = None if ion else species_counts(formula_raw)
        amounts = dict(counts) if counts else None
        symbolic = nonstoichiometric = False
        extra, mp_id = None, None
    amount_raw = None if species is None else str(species.amount_raw)
    return ParticipantData(
        role=role, position=position, formula_raw=formula_raw, formula=formula, amount_raw=amount_raw,
        amount=None if species is None else evaluate_amount(species.amount_raw, values),
        is_symbolic=bool(symbolic or (species is not None and species.variables)),
        is_organic=is_organic(formula_raw, amounts), is_nonstoichiometric=nonstoichiometric,
        substitutions=extra, mp_id=mp_id,
    )


def _substitutions(material: Material, element_substitution: Any) -> dict[str, Any] | None:
    found = {
        "element_substitution": element_substitution or None,
        "elements_vars": material.elements_vars or None,
        "amounts_vars": material.amounts_vars or None,
        "additives": material.additives or None,
        "oxygen_deficiency": material.raw.get("oxygen_deficiency") or None,
    }
    found = {k: v for k, v in found.items() if v is not None}
    return found or None


def _is_pure_element_product(p: ParticipantData) -> bool:
    """A target or byproduct made of one element, other than the gases a reaction releases (O2, N2, H2, ...)."""
    if p.role == PRECURSOR or p.formula is None:
        return False
    parsed = parsed_formula(p.formula)
    if parsed is None or len(parsed.elements) != 1:
        return False
    return p.role == TARGET or parsed.elements[0] not in GAS_ELEMENTS
