"""Annotation records: a material revision may have no composition (a WBM symmetry row, a model prediction).

``material_revision.composition_id`` becomes nullable. ``materials_current`` keeps such materials (LEFT JOIN, NULL
formula) and, of a material's current revisions, prefers one with a composition, so a WBM material whose summary
and symmetry tables are both loaded shows the summary's formula. ``properties_current`` keeps the properties of
revisions without a composition, with a NULL formula.

Downgrading refuses while revisions without a composition exist: NOT NULL cannot come back without deleting them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies: this revision's view definitions, and the ones it replaces (0001's materials_current, 0003's
# properties_current).
VIEWS_NEW: dict[str, str] = {
    'materials_current': """
        SELECT DISTINCT ON (m.id)
            m.id AS material_id, s.name AS source, m.source_record_id, c.id AS composition_id, c.formula,
            c.chemical_system, c.n_elements, r.formula_raw, r.dataset, r.valid_from_run_id
        FROM material m
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = m.id AND r.valid_to_run_id IS NULL AND r.status = 'active'
        LEFT JOIN composition c ON c.id = r.composition_id
        ORDER BY m.id, r.composition_id IS NULL, r.valid_from_run_id DESC, r.id DESC
    """,
    'properties_current': """
        SELECT p.id AS property_value_id, p.material_id, s.name AS source, m.source_record_id, c.formula,
            c.chemical_system, p.property, p.value, p.unit, p.method, p.correction_scheme,
            p.correction_scheme_version, p.reference, p.extra, p.structure_id, p.dataset, p.valid_from_run_id
        FROM property_value p
        JOIN material m ON m.id = p.material_id
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = p.material_id AND r.dataset = p.dataset
            AND r.valid_to_run_id IS NULL AND r.status = 'active'
        LEFT JOIN composition c ON c.id = r.composition_id
        WHERE p.valid_to_run_id IS NULL
    """,
}

VIEWS_OLD: dict[str, str] = {
    'materials_current': """
        SELECT DISTINCT ON (m.id)
            m.id AS material_id, s.name AS source, m.source_record_id, c.id AS composition_id, c.formula,
            c.chemical_system, c.n_elements, r.formula_raw, r.dataset, r.valid_from_run_id
        FROM material m
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = m.id AND r.valid_to_run_id IS NULL AND r.status = 'active'
        JOIN composition c ON c.id = r.composition_id
        ORDER BY m.id, r.valid_from_run_id DESC, r.id DESC
    """,
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
}


def _replace(views: dict[str, str]) -> None:
    for name, body in views.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def upgrade() -> None:
    op.alter_column("material_revision", "composition_id", existing_type=sa.Integer(), nullable=True)
    _replace(VIEWS_NEW)


def downgrade() -> None:
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM material_revision WHERE composition_id IS NULL")).scalar()
    if n:
        raise RuntimeError(
            f"cannot downgrade below 0004: {n} material revisions have no composition (annotation records); "
            "delete them, or keep this schema"
        )
    _replace(VIEWS_OLD)
    op.alter_column("material_revision", "composition_id", existing_type=sa.Integer(), nullable=False)
