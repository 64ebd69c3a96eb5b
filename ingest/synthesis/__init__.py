"""Text-mined synthesis recipes (Kononova et al., Sci. Data 6, 203, 2019): one recipe per balanced reaction.

Files are ``{"release_date": ..., "reactions": [...]}`` (a bare list of reactions is accepted too), read as a stream
so that a release never has to fit in memory. Two dialects of the same family are read by the same code:

* the 2019 solid-state release: lists everywhere, units ``C`` and ``h``, variable values as
  ``{"values", "min_value", "max_value"}``, no ``synthesis_type``;
* the later releases (sol-gel, solid-state 2020): a ``synthesis_type`` field, ``null`` or a string where the first
  has a list (atmosphere, device, media), variable values as plain lists, units spelled ``°C``, ``K``, ``hours``,
  ``min``, ``day``, ``hrs``, and the material fields ``material_name``, ``phase`` and ``is_acronym``.

Identity: ``record_id`` is ``<doi, lower case>:<sha1 of paragraph, target and reaction string>``. The source has no
ids, and these fields tell its recipes apart. The 2019 release holds 2,183 recipes twice, identical but for the case
of their DOI (RSC papers): they share an id and the framework rejects the repeat as ``duplicate_id``. Records that
share the id fields but differ in anything else get ``~2``, ``~3`` suffixes in file order, so only true repeats are
rejected.

Composition of a recipe (``MaterialRecord.formula``): the target's nominal composition, with the reaction's element
substitution (``M = Fe``) applied, variables replaced where the record gives one value, and oxygen deficiency
(``del_O``) taken as 0. A target whose variables take several values (a series, ``x = 0.1 ... 0.5``) gets the first
concrete composition in ``targets_string`` that matches it, and ``extra["formula_source"]`` says so; the symbolic
text stays in the target participant. Only a target that gives no composition at all is rejected
(``variable_stoichiometry``).

Participants: the target, every species of the reaction's left side (named precursors and the species the
balancing added: O2, H2O, ions) and the named precursors that the reaction leaves out (dopant sources, amount
unknown), then the right side's byproducts. Amounts are kept as written; ``amount`` is their value in this recipe
(symbolic amounts evaluated where the variables have one value, else None). Ions (``[OH-]``) get no composition.

Operations keep their order, type, token and non-empty raw conditions; temperatures become kelvin, times hours
(min and max over every value given), atmospheres one of air, O2, N2, Ar, H2, vacuum, other (raw text kept), and
the mixing device and media are joined into text. Flags: ``n_precursors`` counts the named precursors,
``has_conditions`` means some operation has a normalised condition, ``max_temperature_k`` is the highest
temperature of any operation, ``has_pure_element_product`` ignores the gases a reaction releases (O2, N2, H2...).

Rejected records: ``invalid_record`` (wrong types), ``missing_target``, ``unparsable_reaction`` (no ``==``, an empty
side, sides that disagree with the reaction string), ``non_numeric_amount``, ``non_positive_amount`` (negative
coefficients, which the text-mining balancer uses to force a balance), ``unbalanced_reaction`` (element totals
differ beyond the rounding of the written amounts), ``variable_stoichiometry``, and the framework's formula codes.

Layout: this module is the source's contract (``info``, ``dataset``, ``read``, ``normalise``); ``reading`` streams
the files and keys the records, ``amounts`` evaluates amounts with variables, ``materials`` resolves a material's
composition, ``reactions`` checks the balanced reaction, ``conditions`` normalises the operations, and ``recipe``
puts one record together.
"""

from __future__ import annotations

from pathlib import Path

from matlake.schema.enums import SourceName

from ..framework import SourceInfo
from .amounts import AmountError, amount_variables, evaluate_amount
from .conditions import atmosphere_class
from .reading import SOL_GEL, SOLID_STATE, dataset, read, record_key
from .recipe import normalise

__all__ = ["SOLID_STATE", "SOL_GEL", "AmountError", "amount_variables", "atmosphere_class", "dataset",
           "default_files", "evaluate_amount", "info", "normalise", "read", "record_key"]

info = SourceInfo(
    name=SourceName.SYNTHESIS,
    title="Text-mined inorganic synthesis recipes (solid-state and sol-gel)",
    licence="no licence file in the repository; cite the data paper",
    citation="Kononova et al., Text-mined dataset of inorganic materials synthesis recipes, Sci. Data 6, 203 (2019)",
    homepage="https://github.com/CederGroupHub/text-mined-synthesis_public",
)


def default_files() -> list[Path]:
    """The shared 2019 solid-state release, when present."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "synthesis" / \
        "solid-state_dataset_2019-12-03.json.xz"
    return [path] if path.exists() else []
