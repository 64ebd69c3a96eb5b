"""Text-mined synthesis recipes: recipes, their participants and their ordered operations."""

from __future__ import annotations

from typing import Any

from sqlmodel import Field

from .columns import double, json_field, text
from .versioning import Versioned


class Recipe(Versioned, table=True):
    """One synthesis recipe (one paragraph's reaction for one target), with flags the models filter on."""

    __tablename__ = "recipe"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id", description="Record identity of the recipe in its source.")
    doi: str | None = None
    synthesis_type: str | None = Field(default=None, description="solid-state, sol-gel, ...")
    target_formula: str | None = None
    target_composition_id: int | None = Field(default=None, foreign_key="composition.id")
    reaction_string: str | None = text()
    paragraph_excerpt: str | None = text()
    n_precursors: int = 0
    n_operations: int = 0
    has_operations: bool = False
    has_conditions: bool = False
    has_nonstoichiometric: bool = False
    has_organic: bool = False
    has_pure_element_product: bool = False
    max_temperature_k: float | None = double(nullable=True)
    extra: dict[str, Any] | None = json_field()


class RecipeParticipant(Versioned, table=True):
    """One target, precursor or byproduct of a recipe, with its amount in the balanced reaction."""

    __tablename__ = "recipe_participant"

    id: int | None = Field(default=None, primary_key=True)
    recipe_id: int = Field(foreign_key="recipe.id")
    role: str = Field(description="ParticipantRole: target, precursor, byproduct.")
    position: int
    formula_raw: str
    composition_id: int | None = Field(default=None, foreign_key="composition.id")
    amount_raw: str | None = None
    amount: float | None = double(nullable=True)
    is_symbolic: bool = Field(default=False, description="Amount or composition contains variables such as x.")
    is_organic: bool = False
    is_nonstoichiometric: bool = False
    substitutions: dict[str, Any] | None = json_field(description="Element substitutions and variable values.")
    mp_id: str | None = None


class RecipeOperation(Versioned, table=True):
    """One ordered operation of a recipe (mixing, heating, ...), raw conditions and normalised units."""

    __tablename__ = "recipe_operation"

    id: int | None = Field(default=None, primary_key=True)
    recipe_id: int = Field(foreign_key="recipe.id")
    position: int
    type: str
    token: str | None = None
    conditions_raw: dict[str, Any] | None = json_field()
    temperature_min_k: float | None = double(nullable=True)
    temperature_max_k: float | None = double(nullable=True)
    time_min_h: float | None = double(nullable=True)
    time_max_h: float | None = double(nullable=True)
    atmosphere: str | None = Field(default=None, description="air, O2, N2, Ar, H2, vacuum, other.")
    atmosphere_raw: str | None = None
    device: str | None = None
    media: str | None = None
