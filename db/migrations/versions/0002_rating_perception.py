"""Ratings say what the rater perceived and what an agent was told: perception, told, extras.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('perception', sa.String(length=16), nullable=False, server_default='none'))
        batch_op.add_column(sa.Column('told', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('extras', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_column('extras')
        batch_op.drop_column('told')
        batch_op.drop_column('perception')
