"""Pydantic v2 schemas of the iris FastAPI app (notebook 03): requests, responses and their limits.

Extra fields are forbidden (``extra="forbid"`` → 422 ``extra_forbidden``): a client that sends
``{"features": [...], "unit": "mm"}`` believes the server reads ``unit``; silently ignoring it would
return a confident answer to a question the client did not ask.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "N_FEATURES",
    "MAX_BATCH",
    "MAX_CM",
    "Feature",
    "FeatureRow",
    "IrisFeatures",
    "IrisBatch",
    "PredictionResponse",
    "BatchResponse",
    "HealthResponse",
]

N_FEATURES = 4
MAX_BATCH = 100
EXAMPLE_FEATURES = [5.1, 3.5, 1.4, 0.2]
# No iris part is a metre long. The bound also keeps the network's float32 arithmetic finite: without it,
# 1e308 overflows float32 and 3e38 gives inf logits and a NaN probability, which no JSON answer can carry (a 500).
MAX_CM = 100.0

# One measurement in cm: a JSON number (strict: no "5.1" strings, no true/false), finite (no NaN/Infinity),
# between 0 and MAX_CM.
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_CM)]
# One flower: exactly 4 measurements (sepal length, sepal width, petal length, petal width).
FeatureRow = Annotated[list[Feature], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class IrisFeatures(BaseModel):
    """Request of POST /predict: {"features": [4 finite, non-negative numbers]}."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"features": EXAMPLE_FEATURES}]})

    features: FeatureRow = Field(description="sepal length, sepal width, petal length, petal width (cm)")


class IrisBatch(BaseModel):
    """Request of POST /predict/batch: {"instances": [[4 numbers], ...]} with 1 to MAX_BATCH rows."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"instances": [EXAMPLE_FEATURES, [6.9, 3.1, 5.4, 2.1]]}]}
    )

    instances: list[FeatureRow] = Field(min_length=1, max_length=MAX_BATCH, description="rows of 4 measurements (cm)")


class PredictionResponse(BaseModel):
    """One prediction: class id, class name and the model's probability for that class."""

    prediction: int = Field(ge=0, description="class id (0 setosa, 1 versicolor, 2 virginica)")
    class_name: str
    confidence: float = Field(ge=0, le=1, description="softmax probability of the predicted class")


class BatchResponse(BaseModel):
    """Answer of POST /predict/batch, in the order of the request's rows."""

    predictions: list[PredictionResponse]


class HealthResponse(BaseModel):
    """Answer of GET /health."""

    status: str
    version: str
    model: str
