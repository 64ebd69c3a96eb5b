"""The versioned relational schema (SQLModel tables), the SQL views users query, and shared enums."""

from sqlmodel import SQLModel

from . import enums
from .features import FeatureSet
from .materials import Composition, Material, MaterialRevision, PropertyValue, RelaxationStep, Structure
from .models import DatasetSplit, Model, ModelMetric, Prediction, PredictionRun, SplitMember
from .provenance import IngestReject, IngestRun, Source, SourceRelease
from .superconductors import CuprateCalibration, CuprateGeometry, SuperconductorRecord
from .synthesis import Recipe, RecipeOperation, RecipeParticipant

metadata = SQLModel.metadata

__all__ = [
    "Composition", "CuprateCalibration", "CuprateGeometry", "DatasetSplit", "FeatureSet", "IngestReject", "IngestRun",
    "Material", "MaterialRevision", "Model", "ModelMetric", "Prediction", "PredictionRun", "PropertyValue", "Recipe",
    "RecipeOperation", "RecipeParticipant", "RelaxationStep", "Source", "SourceRelease", "SplitMember", "Structure",
    "SuperconductorRecord", "enums", "metadata",
]
