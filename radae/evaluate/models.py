"""The model registry and the per-fold pipeline built for a model name.

One sklearn ``Pipeline`` per outer training fold (cloned by ``GridSearchCV``):

    impute (median) -> drop near-constant -> drop highly correlated -> scale -> select -> model

and, for the voxel-PCA baseline, ``impute -> VoxelPCA -> scale -> model``. Clinical covariates added to a
feature set are *forced*: they skip the filters and the selection (imputed and scaled only), through a
``ColumnTransformer``. ``CLASSIFIERS`` and ``SURVIVAL_MODELS`` map a model name to its estimator and
hyperparameter grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from radae.util.errors import BenchmarkError
from radae.evaluate.baselines import VoxelPCA
from radae.evaluate.selectors import SELECTORS, DropCorrelated, DropNearConstant
from radae.evaluate.survival import CoxElasticNet, SurvivalForest

Task = Literal["classification", "survival"]

C_GRID = [0.01, 0.1, 1.0, 10.0]

ModelFactory = Callable[[int], tuple[BaseEstimator, dict[str, list]]]

CLASSIFIERS: dict[str, ModelFactory] = {
    "logistic_l1": lambda seed: (
        LogisticRegression(l1_ratio=1.0, solver="liblinear", max_iter=2000, random_state=seed),
        {"C": C_GRID},
    ),
    "logistic_l2": lambda seed: (LogisticRegression(max_iter=2000), {"C": C_GRID}),
    "logistic_enet": lambda seed: (
        LogisticRegression(solver="saga", max_iter=5000, random_state=seed),
        {"C": C_GRID, "l1_ratio": [0.25, 0.75]},
    ),
    "random_forest": lambda seed: (
        RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1),
        {"min_samples_leaf": [1, 5]},
    ),
    "svm": lambda seed: (
        CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid", cv=3, ensemble=False),
        {"estimator__C": [0.1, 1.0, 10.0]},
    ),
}

SURVIVAL_MODELS: dict[str, ModelFactory] = {
    "cox_enet": lambda seed: (CoxElasticNet(l1_ratio=0.5), {"alpha": [0.01, 0.03, 0.1, 0.3]}),
    "rsf": lambda seed: (SurvivalForest(n_estimators=200, random_state=seed), {"min_samples_leaf": [3, 10]}),
}


@dataclass(frozen=True)
class PipelineSpec:
    """How to build one fold's pipeline (everything but the data)."""

    task: Task
    model: str
    selection: Literal["none", "l1", "univariate", "mrmr"] = "univariate"
    max_features: int = 10
    correlation_threshold: float = 0.95
    inner_folds: int = 3
    preprocessing: Literal["standard", "voxel_pca"] = "standard"
    pca_components: int = 10
    harmonise: bool = False  # the last input column is a batch code: ComBat first (radae.evaluate.harmonise)


def build_pipeline(spec: PipelineSpec, forced: np.ndarray, seed: int, memory: str | None = None) -> tuple[Pipeline, dict[str, list]]:
    """The unfitted pipeline and its hyperparameter grid (keys prefixed for ``GridSearchCV``).

    ``forced``: boolean mask over the input columns that bypass filtering and selection.
    ``memory``: a cache folder for the fitted transformers; the grid only tunes the model, so within one
    inner split the preprocessing is fitted once instead of once per grid point.
    """
    registry = CLASSIFIERS if spec.task == "classification" else SURVIVAL_MODELS
    if spec.model not in registry:
        raise BenchmarkError(f"model {spec.model!r} is not a {spec.task} model; choose from {sorted(registry)}")
    model, grid = registry[spec.model](seed)
    forced = np.asarray(forced, dtype=bool)
    head: list = []
    if spec.harmonise:
        from radae.evaluate.harmonise import ComBat

        forced = forced[:-1]
        head = [("harmonise", ComBat(columns=~forced, unseen="identity"))]  # a small inner split may lack a site
    if spec.preprocessing == "voxel_pca":
        pre: list = [  # voxels are never missing: no imputer
            ("pca", VoxelPCA(spec.pca_components, random_state=seed)),
            ("scale", StandardScaler()),
        ]
    else:
        chain = [
            ("impute", SimpleImputer(strategy="median")),
            ("near_constant", DropNearConstant()),
            ("decorrelate", DropCorrelated(spec.correlation_threshold)),
            ("scale", StandardScaler()),
        ]
        if spec.selection != "none":
            chain.append(("select", SELECTORS[spec.selection](spec.max_features, seed)))
        if forced.all():
            pre = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        elif forced.any():
            cols = ColumnTransformer(
                [
                    ("forced", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), np.flatnonzero(forced)),
                    ("features", Pipeline(chain), np.flatnonzero(~forced)),
                ]
            )
            pre = [("columns", cols)]
        else:
            pre = chain
    pipe = Pipeline(head + pre + [("model", model)], memory=memory)
    return pipe, {f"model__{k}": v for k, v in grid.items()}

