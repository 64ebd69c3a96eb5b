"""Task documents: one record per material id (its tasks together), else per task id, with the input and output
structures, final energy and band gap, and the ionic steps of every self-consistent calculation."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from matlake.schema.enums import PropertyName, StructureKind

from ..records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from ..structures import structure_data
from .datasets import TASKS
from .rows import json_documents
from .steps import ionic_step
from .values import excerpt, method_of, number, structure_from_dict

_ALPHA = re.compile(r"^(?P<prefix>[a-z]+)-(?P<digits>[a-z]+)$")


def legacy_task_id(task_id: str) -> str | None:
    """Integer form of an emmet alpha task id (``mp-ft`` -> ``mp-149``: base 26, a=0), as summary docs list them."""
    m = _ALPHA.match(task_id or "")
    if not m:
        return None
    n = 0
    for ch in m["digits"]:
        n = n * 26 + ord(ch) - ord("a")
    return f"{m['prefix']}-{n}"


def read_tasks(path: Path) -> Iterator[RawRecord]:
    """One raw record per material id (or task id) with all its task documents, in file order."""
    docs = json_documents(path, "task documents")
    groups: dict[Any, list[tuple[int, Any]]] = {}
    for i, doc in enumerate(docs):
        key = _task_record_id(doc)
        groups.setdefault(key if key else ("no-id", i), []).append((i, doc))
    for key, members in groups.items():
        position = members[0][0]
        first = members[0][1]
        brief = {k: first.get(k) for k in ("task_id", "material_id", "formula_pretty", "task_type", "calc_type",
                                            "state")} if isinstance(first, Mapping) else first
        payload = {"kind": TASKS, "tasks": [doc for _, doc in members]}
        yield RawRecord(str(path), position, payload, key=key if isinstance(key, str) else None,
                        excerpt=excerpt(brief))


def _task_record_id(doc: Any) -> str | None:
    if not isinstance(doc, Mapping):
        return None
    for field in ("material_id", "task_id"):
        value = doc.get(field)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int):
            return f"mp-{value}"
    return None


def normalise_tasks(raw: RawRecord) -> MaterialRecord:
    """The structures, properties and relaxation steps of a record's tasks; a failed or repeated task rejects it."""
    key = raw.key
    if not key:
        raise RecordRejected("missing_id", f"task document {raw.position} has no task_id")
    structures, props, steps, tasks_extra = [], [], [], {}
    formula = None
    seen_tasks: set[str] = set()
    for doc in raw.payload["tasks"]:
        if not isinstance(doc, Mapping):
            raise RecordRejected("unreadable_task", f"{key}: task document is not an object", key)
        task_id = _task_record_id({"task_id": doc.get("task_id")}) or key
        if task_id in seen_tasks:
            raise RecordRejected("duplicate_id", f"{key}: task {task_id} occurs twice", key)
        seen_tasks.add(task_id)
        state = doc.get("state")
        if state is not None and state != "successful":
            raise RecordRejected("unsuccessful_task", f"{key}: task {task_id} has state {state!r}", key)
        t_structs, t_props, t_steps, t_extra = _one_task(doc, task_id, key, len(structures))
        structures += t_structs
        props += t_props
        steps += t_steps
        tasks_extra[task_id] = t_extra
        formula = formula or doc.get("formula_pretty") or t_structs[-1].formula
    extra = {"task_ids": list(tasks_extra), "tasks": tasks_extra}
    return MaterialRecord(record_id=key, formula=formula, structures=structures, properties=props,
                          relaxation_steps=steps, extra=extra)


def _run_type(doc: Mapping[str, Any]) -> str | None:
    run_type = doc.get("run_type")
    if not run_type:
        for calc in doc.get("calcs_reversed") or []:
            if isinstance(calc, Mapping) and calc.get("run_type"):
                return calc["run_type"]
        inp = doc.get("input") or {}
        if isinstance(inp, Mapping) and "is_hubbard" in inp:
            return "GGA+U" if inp["is_hubbard"] else "GGA"
    return run_type


def _is_non_self_consistent(doc: Mapping[str, Any], calc: Mapping[str, Any]) -> bool:
    """NSCF runs (ICHARG >= 10) have no self-consistent energy or forces, so they give no relaxation steps."""
    labels = " ".join(str(x) for x in (doc.get("task_type"), doc.get("calc_type"), calc.get("task_type"),
                                        calc.get("calc_type"), (calc.get("task") or {}).get("type")) if x)
    if "nscf" in labels.lower():
        return True
    incar = ((calc.get("input") or {}).get("incar") or (doc.get("input") or {}).get("incar") or {})
    try:
        return int(incar.get("ICHARG", 0)) >= 10
    except (TypeError, ValueError):
        return False


def _one_task(doc: Mapping[str, Any], task_id: str, key: str, offset: int):
    run_type = _run_type(doc)
    method = method_of(run_type)
    inp = doc.get("input") or {}
    out = doc.get("output") or {}
    orig = doc.get("orig_inputs") or {}
    initial_d = inp.get("structure") or orig.get("structure") or (orig.get("poscar") or {}).get("structure")
    relaxed_d = out.get("structure") or doc.get("structure")
    spg = (out.get("spacegroup") or {}).get("number") or (doc.get("symmetry") or {}).get("number")
    structures = [
        structure_data(structure_from_dict(initial_d, "input", key), StructureKind.INITIAL, calculation_id=task_id),
        structure_data(structure_from_dict(relaxed_d, "output", key), StructureKind.RELAXED, calculation_id=task_id,
                       spacegroup_number=spg if isinstance(spg, int) else None),
    ]
    calcs = [c for c in reversed(doc.get("calcs_reversed") or []) if isinstance(c, Mapping)]
    nscf = bool(calcs) and all(_is_non_self_consistent(doc, c) for c in calcs)
    tag = {"task_id": task_id}
    props = []
    energy = number(out.get("energy"), "output energy", key, required=False)
    if energy is not None and not nscf:
        props.append(PropertyData(PropertyName.UNCORRECTED_ENERGY, energy, "eV", method,
                                  structure_index=offset + 1, extra=tag))
    gap = number(out.get("bandgap"), "band gap", key, required=False)
    if gap is not None:
        props.append(PropertyData(PropertyName.BAND_GAP, gap, "eV", method, structure_index=offset + 1, extra=tag))
    steps = []
    for calc in calcs:
        if _is_non_self_consistent(doc, calc):
            continue
        for step in ((calc.get("output") or {}).get("ionic_steps") or []):
            steps.append(ionic_step(step, task_id, len(steps), key))
    extra = {"task_type": doc.get("task_type"), "calc_type": doc.get("calc_type"), "run_type": run_type,
             "completed_at": doc.get("completed_at"), "legacy_task_id": legacy_task_id(task_id),
             "n_calcs": len(calcs), "non_self_consistent": nscf or None}
    return structures, props, steps, {k: v for k, v in extra.items() if v is not None}
