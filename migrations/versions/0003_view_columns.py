"""Views: properties_current shows reference and extra; recipes_current shows target_composition_id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies: this revision's view definitions, and the ones it replaces.
VIEWS_NEW: dict[str, str] = {
    'properties_current': """
        SELECT p.id AS property_value_id, p.material_id, s.name AS source, m.source_record_id, c.formula,
            c.chemical_system, p.property, p.value, p.unit, p.method, p.correction_scheme,
            p.correction_scheme_version, p.reference, p.extra, p.structure_id, p.dataset, p.valid_from_run_id
        FROM property_value p
        JOIN material m ON m.id = p.material_id
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = p.material_id AND r.dataset = p.dataset
            AND r.valid_to_run_id IS NULL AND r.status = 'active'
        JOIN composition c ON c.id = r.composition_id
        WHERE p.valid_to_run_id IS NULL
    """,
    'recipes_current': """
        SELECT rc.id AS recipe_id, rc.material_id, m.source_record_id, rc.doi, rc.synthesis_type,
            rc.target_formula, rc.target_composition_id, c.formula AS target_canonical_formula, rc.reaction_string,
            rc.n_precursors,
            rc.n_operations, rc.has_operations, rc.has_conditions, rc.has_nonstoichiometric, rc.has_organic,
            rc.has_pure_element_product, rc.max_temperature_k, rc.valid_from_run_id
        FROM recipe rc
        JOIN material m ON m.id = rc.material_id
        LEFT JOIN composition c ON c.id = rc.target_composition_id
        WHERE rc.valid_to_run_id IS NULL
    """,
}

VIEWS_OLD: dict[str, str] = {
    'properties_current': """
        SELECT p.id AS property_value_id, p.material_id, s.name AS source, m.source_record_id, c.formula,
            c.chemical_system, p.property, p.value, p.unit, p.method, p.correction_scheme,
            p.correction_scheme_version, p.structure_id, p.dataset, p.valid_from_run_id
        FROM property_value p
        JOIN material m ON m.id = p.material_id
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = p.material_id AND r.dataset = p.dataset
            AND r.valid_to_run_id IS NULL AND r.status = 'active'
        JOIN composition c ON c.id = r.composition_id
        WHERE p.valid_to_run_id IS NULL
    """,
    'recipes_current': """
        SELECT rc.id AS recipe_id, rc.material_id, m.source_record_id, rc.doi, rc.synthesis_type,
            rc.target_formula, c.formula AS target_canonical_formula, rc.reaction_string, rc.n_precursors,
            rc.n_operations, rc.has_operations, rc.has_conditions, rc.has_nonstoichiometric, rc.has_organic,
            rc.has_pure_element_product, rc.max_temperature_k, rc.valid_from_run_id
        FROM recipe rc
        JOIN material m ON m.id = rc.material_id
        LEFT JOIN composition c ON c.id = rc.target_composition_id
        WHERE rc.valid_to_run_id IS NULL
    """,
}


def _replace(views: dict[str, str]) -> None:
    for name, body in views.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def upgrade() -> None:
    _replace(VIEWS_NEW)


def downgrade() -> None:
    _replace(VIEWS_OLD)
