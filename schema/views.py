"""The SQL views users query every day. Plain SQL that runs unchanged on DuckDB and PostgreSQL.

Views are created by the migrations (``matlake.migrations``); this module is their single definition.

``materials_current`` and ``properties_current`` keep materials without a known composition (annotation records,
such as a WBM symmetry table loaded alone) with a NULL formula; of a material's current revisions,
``materials_current`` shows one with a composition when there is one.
"""

from __future__ import annotations

VIEWS: dict[str, str] = {
    "materials_current": """
        SELECT DISTINCT ON (m.id)
            m.id AS material_id, s.name AS source, m.source_record_id, c.id AS composition_id, c.formula,
            c.chemical_system, c.n_elements, r.formula_raw, r.dataset, r.valid_from_run_id
        FROM material m
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = m.id AND r.valid_to_run_id IS NULL AND r.status = 'active'
        LEFT JOIN composition c ON c.id = r.composition_id
        ORDER BY m.id, r.composition_id IS NULL, r.valid_from_run_id DESC, r.id DESC
    """,
    "materials_withdrawn": """
        SELECT m.id AS material_id, s.name AS source, m.source_record_id, r.dataset,
            r.valid_from_run_id AS withdrawn_in_run_id
        FROM material m
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = m.id AND r.valid_to_run_id IS NULL AND r.status = 'withdrawn'
    """,
    "properties_current": """
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
    "structures_current": """
        SELECT st.id AS structure_id, st.material_id, s.name AS source, m.source_record_id, st.kind,
            st.calculation_id, c.formula, c.chemical_system, st.n_sites, st.volume_a3, st.density_g_cm3,
            st.is_ordered, st.spacegroup_number, st.dataset, st.valid_from_run_id
        FROM structure st
        JOIN material m ON m.id = st.material_id
        JOIN source s ON s.id = m.source_id
        JOIN composition c ON c.id = st.composition_id
        WHERE st.valid_to_run_id IS NULL
    """,
    "superconductors_current": """
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
    "recipes_current": """
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
    "ingest_history": """
        SELECT r.id AS run_id, s.name AS source, rel.tag AS release, r.dataset, r.mode, r.status, r.started_at,
            r.finished_at, r.n_read, r.n_inserted, r.n_updated, r.n_unchanged, r.n_rejected, r.n_withdrawn,
            r.attempts, r.error
        FROM ingest_run r
        JOIN source s ON s.id = r.source_id
        JOIN source_release rel ON rel.id = r.release_id
    """,
    "predictions_latest": """
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


def create_view_statements() -> list[str]:
    return [f"CREATE VIEW {name} AS {body.strip()}" for name, body in VIEWS.items()]


def drop_view_statements() -> list[str]:
    return [f"DROP VIEW IF EXISTS {name}" for name in reversed(list(VIEWS))]
