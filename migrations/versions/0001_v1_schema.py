"""v1 schema: provenance, materials, superconductors, synthesis, features, models

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the v1 views: later view changes come as new revisions, never edits here.
VIEWS_V1: dict[str, str] = {
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
    'materials_withdrawn': """
        SELECT m.id AS material_id, s.name AS source, m.source_record_id, r.dataset,
            r.valid_from_run_id AS withdrawn_in_run_id
        FROM material m
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = m.id AND r.valid_to_run_id IS NULL AND r.status = 'withdrawn'
    """,
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
    'structures_current': """
        SELECT st.id AS structure_id, st.material_id, s.name AS source, m.source_record_id, st.kind,
            st.calculation_id, c.formula, c.chemical_system, st.n_sites, st.volume_a3, st.density_g_cm3,
            st.is_ordered, st.spacegroup_number, st.dataset, st.valid_from_run_id
        FROM structure st
        JOIN material m ON m.id = st.material_id
        JOIN source s ON s.id = m.source_id
        JOIN composition c ON c.id = st.composition_id
        WHERE st.valid_to_run_id IS NULL
    """,
    'superconductors_current': """
        SELECT sc.id AS superconductor_id, sc.material_id, s.name AS source, m.source_record_id, c.formula,
            sc.tc_kelvin, sc.is_superconducting, sc.lattice_a_angstrom, sc.lattice_b_angstrom,
            sc.lattice_c_angstrom, sc.spacegroup, sc.cuprate_family, sc.n_cuo2_planes, sc.synth_doped, sc.icsd_id,
            sc.dataset, sc.valid_from_run_id
        FROM superconductor sc
        JOIN material m ON m.id = sc.material_id
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = sc.material_id AND r.dataset = sc.dataset
            AND r.valid_to_run_id IS NULL AND r.status = 'active'
        JOIN composition c ON c.id = r.composition_id
        WHERE sc.valid_to_run_id IS NULL
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
    'ingest_history': """
        SELECT r.id AS run_id, s.name AS source, rel.tag AS release, r.dataset, r.mode, r.status, r.started_at,
            r.finished_at, r.n_read, r.n_inserted, r.n_updated, r.n_unchanged, r.n_rejected, r.n_withdrawn,
            r.attempts, r.error
        FROM ingest_run r
        JOIN source s ON s.id = r.source_id
        JOIN source_release rel ON rel.id = r.release_id
    """,
    'predictions_latest': """
        SELECT prediction_id, prediction_run_id, model_id, model_name, model_version, architecture, target_property,
            snapshot_run_id, material_id, composition_id, formula, structure_id, protostructure, mean, std_aleatoric,
            std_epistemic, std_total
        FROM (
            SELECT p.id AS prediction_id, p.run_id AS prediction_run_id, mo.id AS model_id, mo.name AS model_name,
                mo.version AS model_version, mo.architecture, mo.target_property, pr.snapshot_run_id, p.material_id,
                p.composition_id, c.formula, p.structure_id, p.protostructure, p.mean, p.std_aleatoric,
                p.std_epistemic, p.std_total,
                ROW_NUMBER() OVER (
                    PARTITION BY pr.model_id, COALESCE(p.material_id, -1), COALESCE(p.composition_id, -1),
                        COALESCE(p.structure_id, -1), COALESCE(p.protostructure, '')
                    ORDER BY p.run_id DESC
                ) AS recency
            FROM prediction p
            JOIN prediction_run pr ON pr.id = p.run_id
            JOIN model mo ON mo.id = pr.model_id
            LEFT JOIN composition c ON c.id = p.composition_id
        ) ranked
        WHERE recency = 1
    """,
}


def upgrade() -> None:
    op.create_table('composition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('formula', sa.String(), nullable=False),
    sa.Column('elements', sa.JSON(), nullable=False),
    sa.Column('fractions', sa.JSON(), nullable=False),
    sa.Column('amounts', sa.JSON(), nullable=False),
    sa.Column('chemical_system', sa.String(), nullable=False),
    sa.Column('n_elements', sa.Integer(), nullable=False),
    sa.Column('is_integer', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('formula')
    )
    op.create_table('cuprate_calibration',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('family', sa.String(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('alpha', sa.Double(), nullable=False),
    sa.Column('beta', sa.Double(), nullable=False),
    sa.Column('gamma', sa.Double(), nullable=False),
    sa.Column('n_structures', sa.Integer(), nullable=False),
    sa.Column('mae_angstrom', sa.Double(), nullable=False),
    sa.Column('rmse_angstrom', sa.Double(), nullable=False),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('dataset_split',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('strategy', sa.String(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=True),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('n_members', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('feature_set',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('partition', sa.String(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=True),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('library_versions', sa.JSON(), nullable=True),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('input_runs', sa.JSON(), nullable=True),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('column_schema', sa.JSON(), nullable=True),
    sa.Column('files', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', 'partition')
    )
    op.create_table('source',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('title', sa.String(), nullable=False),
    sa.Column('licence', sa.String(), nullable=False),
    sa.Column('citation', sa.String(), nullable=False),
    sa.Column('homepage', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('material',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('source_record_id', sa.String(), nullable=False),
    sa.Column('first_run_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'source_record_id')
    )
    op.create_table('model',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('architecture', sa.String(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=True),
    sa.Column('target_property', sa.String(), nullable=False),
    sa.Column('target_source', sa.String(), nullable=True),
    sa.Column('split_id', sa.Integer(), nullable=True),
    sa.Column('feature_sets', sa.JSON(), nullable=True),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('normaliser', sa.JSON(), nullable=True),
    sa.Column('n_members', sa.Integer(), nullable=False),
    sa.Column('parent_model_id', sa.Integer(), nullable=True),
    sa.Column('weights_path', sa.String(), nullable=True),
    sa.Column('weights_sha256', sa.String(), nullable=True),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('train_seconds', sa.Double(), nullable=True),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['split_id'], ['dataset_split.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version')
    )
    op.create_table('source_release',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(), nullable=False),
    sa.Column('retrieved_at', sa.DateTime(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'tag')
    )
    op.create_table('ingest_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('mode', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=True),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('host', sa.String(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('n_read', sa.Integer(), nullable=False),
    sa.Column('n_inserted', sa.Integer(), nullable=False),
    sa.Column('n_updated', sa.Integer(), nullable=False),
    sa.Column('n_unchanged', sa.Integer(), nullable=False),
    sa.Column('n_rejected', sa.Integer(), nullable=False),
    sa.Column('n_withdrawn', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['release_id'], ['source_release.id'], ),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('material_revision',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('composition_id', sa.Integer(), nullable=False),
    sa.Column('formula_raw', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['composition_id'], ['composition.id'], ),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('model_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('member', sa.Integer(), nullable=True),
    sa.Column('part', sa.String(), nullable=False),
    sa.Column('metric', sa.String(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('prediction_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('selection', sa.String(), nullable=False),
    sa.Column('selection_hash', sa.String(), nullable=False),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('n_predictions', sa.Integer(), nullable=False),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('recipe',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('doi', sa.String(), nullable=True),
    sa.Column('synthesis_type', sa.String(), nullable=True),
    sa.Column('target_formula', sa.String(), nullable=True),
    sa.Column('target_composition_id', sa.Integer(), nullable=True),
    sa.Column('reaction_string', sa.String(), nullable=True),
    sa.Column('paragraph_excerpt', sa.String(), nullable=True),
    sa.Column('n_precursors', sa.Integer(), nullable=False),
    sa.Column('n_operations', sa.Integer(), nullable=False),
    sa.Column('has_operations', sa.Boolean(), nullable=False),
    sa.Column('has_conditions', sa.Boolean(), nullable=False),
    sa.Column('has_nonstoichiometric', sa.Boolean(), nullable=False),
    sa.Column('has_organic', sa.Boolean(), nullable=False),
    sa.Column('has_pure_element_product', sa.Boolean(), nullable=False),
    sa.Column('max_temperature_k', sa.Double(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.ForeignKeyConstraint(['target_composition_id'], ['composition.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('split_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('split_id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('part', sa.String(), nullable=False),
    sa.Column('group_key', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.ForeignKeyConstraint(['split_id'], ['dataset_split.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('structure',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('composition_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('calculation_id', sa.String(), nullable=True),
    sa.Column('lattice', sa.JSON(), nullable=False),
    sa.Column('species', sa.JSON(), nullable=False),
    sa.Column('frac_coords', sa.JSON(), nullable=False),
    sa.Column('site_properties', sa.JSON(), nullable=True),
    sa.Column('n_sites', sa.Integer(), nullable=False),
    sa.Column('volume_a3', sa.Double(), nullable=False),
    sa.Column('density_g_cm3', sa.Double(), nullable=False),
    sa.Column('is_ordered', sa.Boolean(), nullable=False),
    sa.Column('spacegroup_number', sa.Integer(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['composition_id'], ['composition.id'], ),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('superconductor',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('tc_kelvin', sa.Double(), nullable=False),
    sa.Column('is_superconducting', sa.Boolean(), nullable=False),
    sa.Column('lattice_a_angstrom', sa.Double(), nullable=True),
    sa.Column('lattice_b_angstrom', sa.Double(), nullable=True),
    sa.Column('lattice_c_angstrom', sa.Double(), nullable=True),
    sa.Column('spacegroup', sa.String(), nullable=True),
    sa.Column('cuprate_family', sa.String(), nullable=True),
    sa.Column('n_cuo2_planes', sa.Integer(), nullable=True),
    sa.Column('synth_doped', sa.Boolean(), nullable=True),
    sa.Column('icsd_id', sa.String(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('cuprate_geometry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('structure_id', sa.Integer(), nullable=False),
    sa.Column('cu_site_index', sa.Integer(), nullable=False),
    sa.Column('in_plane_cu_o_angstrom', sa.Double(), nullable=False),
    sa.Column('apical_cu_o_angstrom', sa.Double(), nullable=True),
    sa.Column('n_apical', sa.Integer(), nullable=False),
    sa.Column('snapshot_run_id', sa.Integer(), nullable=False),
    sa.Column('code_version', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['structure_id'], ['structure.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('ingest_reject',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('file', sa.String(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('record_key', sa.String(), nullable=True),
    sa.Column('reason_code', sa.String(), nullable=False),
    sa.Column('message', sa.String(), nullable=False),
    sa.Column('raw_excerpt', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['ingest_run.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=True),
    sa.Column('composition_id', sa.Integer(), nullable=True),
    sa.Column('structure_id', sa.Integer(), nullable=True),
    sa.Column('protostructure', sa.String(), nullable=True),
    sa.Column('mean', sa.Double(), nullable=False),
    sa.Column('std_aleatoric', sa.Double(), nullable=True),
    sa.Column('std_epistemic', sa.Double(), nullable=True),
    sa.Column('std_total', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['composition_id'], ['composition.id'], ),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['prediction_run.id'], ),
    sa.ForeignKeyConstraint(['structure_id'], ['structure.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('property_value',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('structure_id', sa.Integer(), nullable=True),
    sa.Column('property', sa.String(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('unit', sa.String(), nullable=False),
    sa.Column('method', sa.String(), nullable=False),
    sa.Column('correction_scheme', sa.String(), nullable=True),
    sa.Column('correction_scheme_version', sa.String(), nullable=True),
    sa.Column('reference', sa.String(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.ForeignKeyConstraint(['structure_id'], ['structure.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('recipe_operation',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipe_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('token', sa.String(), nullable=True),
    sa.Column('conditions_raw', sa.JSON(), nullable=True),
    sa.Column('temperature_min_k', sa.Double(), nullable=True),
    sa.Column('temperature_max_k', sa.Double(), nullable=True),
    sa.Column('time_min_h', sa.Double(), nullable=True),
    sa.Column('time_max_h', sa.Double(), nullable=True),
    sa.Column('atmosphere', sa.String(), nullable=True),
    sa.Column('atmosphere_raw', sa.String(), nullable=True),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('media', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['recipe_id'], ['recipe.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('recipe_participant',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipe_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('formula_raw', sa.String(), nullable=False),
    sa.Column('composition_id', sa.Integer(), nullable=True),
    sa.Column('amount_raw', sa.String(), nullable=True),
    sa.Column('amount', sa.Double(), nullable=True),
    sa.Column('is_symbolic', sa.Boolean(), nullable=False),
    sa.Column('is_organic', sa.Boolean(), nullable=False),
    sa.Column('is_nonstoichiometric', sa.Boolean(), nullable=False),
    sa.Column('substitutions', sa.JSON(), nullable=True),
    sa.Column('mp_id', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['composition_id'], ['composition.id'], ),
    sa.ForeignKeyConstraint(['recipe_id'], ['recipe.id'], ),
    sa.PrimaryKeyConstraint('id')
    )

    for name, body in VIEWS_V1.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")

def downgrade() -> None:
    for name in reversed(list(VIEWS_V1)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('recipe_participant')
    op.drop_table('recipe_operation')
    op.drop_table('property_value')
    op.drop_table('prediction')
    op.drop_table('ingest_reject')
    op.drop_table('cuprate_geometry')
    op.drop_table('superconductor')
    op.drop_table('structure')
    op.drop_table('split_member')
    op.drop_table('recipe')
    op.drop_table('prediction_run')
    op.drop_table('model_metric')
    op.drop_table('material_revision')
    op.drop_table('ingest_run')
    op.drop_table('source_release')
    op.drop_table('model')
    op.drop_table('material')
    op.drop_table('source')
    op.drop_table('feature_set')
    op.drop_table('dataset_split')
    op.drop_table('cuprate_calibration')
    op.drop_table('composition')
