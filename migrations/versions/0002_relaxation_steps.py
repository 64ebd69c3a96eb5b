"""Relaxation steps: every ionic step (energy, forces, stress, cell) of source relaxations, for trajectory features.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relaxation_step',
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('calculation_id', sa.String(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('energy_ev', sa.Double(), nullable=False),
    sa.Column('energy_per_atom_ev', sa.Double(), nullable=False),
    sa.Column('forces_ev_per_a', sa.JSON(), nullable=True),
    sa.Column('stress_kbar', sa.JSON(), nullable=True),
    sa.Column('lattice', sa.JSON(), nullable=False),
    sa.Column('species', sa.JSON(), nullable=False),
    sa.Column('frac_coords', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['material_id'], ['material.id'], ),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('relaxation_step')
