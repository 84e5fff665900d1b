"""Contenders for new items: no sales yet, forecast from product attributes or text.

Training rows come from launches inside the training data (`Fold.launch_rows`):
one row per (item, step after launch) with step in 0..H-1, as many steps as are
observed before the cut-off. Every model predicts units at each step from what
is known before launch: attributes/description, the step and the launch week.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from peers_data import NEW, Fold

ATTRIBUTE_SKIP = {"description", "launch_date"}


def load_embeddings(path: str) -> dict[str, np.ndarray]:
    """item_id -> description embedding, from the benchmark's .npz."""
    with np.load(path, allow_pickle=True) as npz:
        ids = npz["item_id"].astype(str)
        vectors = npz["embedding"].astype(np.float32)
    return dict(zip(ids, vectors))


def _launch_week(launch: pd.DatetimeIndex) -> np.ndarray:
    """Launch week of year, cyclic (sin, cos) plus the raw week for trees."""
    week = launch.isocalendar().week.to_numpy(dtype=float)
    angle = 2 * np.pi * week / 52.18
    return np.column_stack([week, np.sin(angle), np.cos(angle)])


def _prediction_rows(fold: Fold) -> tuple[np.ndarray, pd.DatetimeIndex, np.ndarray]:
    """(item, launch, step) for every new item and step 0..H-1, item-major."""
    H = fold.horizon
    return (np.repeat(fold.new_ids, H), pd.DatetimeIndex(np.repeat(fold.new_launch.to_numpy(), H)),
            np.tile(np.arange(H), len(fold.new_ids)))


def _lgbm_params(seed: int, threads: int) -> dict:
    return {
        "objective": "tweedie", "tweedie_variance_power": 1.1, "learning_rate": 0.05,
        "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.8,
        "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "num_threads": threads, "seed": seed, "verbose": -1,
        "deterministic": True, "force_row_wise": True,  # bitwise-repeatable with threads
    }


class NewItemModel:
    """fit/predict plumbing shared by the new-item contenders; subclasses say how to
    encode an item (`_encode`) and which regressor to train (`_fit_regressor`)."""

    group = NEW
    name = "new"

    def __init__(self, seed: int = 0, threads: int = 2) -> None:
        self.seed, self.threads = seed, threads
        self.regressor = None

    def _features(self, fold: Fold, ids: np.ndarray, launch: pd.DatetimeIndex, steps: np.ndarray, fit: bool):
        raise NotImplementedError

    def _fit_regressor(self, X, y: np.ndarray) -> None:
        import lightgbm as lgb

        self.regressor = lgb.train(_lgbm_params(self.seed, self.threads), lgb.Dataset(X, np.maximum(y, 0)), num_boost_round=300)

    def fit(self, fold: Fold) -> None:
        ids, launch, steps, y = fold.launch_rows()
        if len(y) == 0:
            raise ValueError("no launch inside the training data to learn new items from")
        self._fit_regressor(self._features(fold, ids, launch, steps, fit=True), y)

    def predict(self, fold: Fold) -> np.ndarray:
        ids, launch, steps = _prediction_rows(fold)
        if len(ids) == 0:
            return np.empty((0, fold.horizon))
        values = self.regressor.predict(self._features(fold, ids, launch, steps, fit=False))
        return np.asarray(values, dtype=float).reshape(len(fold.new_ids), fold.horizon)


class LightGBMNewOneHot(NewItemModel):
    """LightGBM on attribute one-hots (or description bag-of-words when the
    products table has no attribute columns) + step + launch week."""

    name = "lgbm_new_onehot"

    def __init__(self, seed: int = 0, threads: int = 2) -> None:
        super().__init__(seed, threads)
        self.encoder = None
        self.columns: list[str] = []

    def _encode(self, products: pd.DataFrame, fit: bool) -> sp.csr_matrix:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import OneHotEncoder

        if fit:
            self.columns = [c for c in products.columns if c not in ATTRIBUTE_SKIP]
            if self.columns:
                self.encoder = OneHotEncoder(handle_unknown="ignore", min_frequency=2)
                self.encoder.fit(products[self.columns].astype(str))
            else:  # online_retail: words of the product name
                self.encoder = CountVectorizer(binary=True, min_df=2, token_pattern=r"(?u)\b[A-Za-z]{2,}\b")
                self.encoder.fit(products["description"])
        data = products[self.columns].astype(str) if self.columns else products["description"]
        return sp.csr_matrix(self.encoder.transform(data), dtype=np.float32)

    def _features(self, fold, ids, launch, steps, fit):
        unique, inverse = np.unique(ids, return_inverse=True)
        items = self._encode(fold.products.reindex(unique).fillna(""), fit)[inverse]
        dense = np.column_stack([steps, _launch_week(launch)]).astype(np.float32)
        return sp.hstack([items, sp.csr_matrix(dense)], format="csr")


class EmbeddingNewItem(NewItemModel):
    """Text-embedding features: the description vector + step + launch week."""

    def __init__(self, embeddings: dict[str, np.ndarray], seed: int = 0, threads: int = 2) -> None:
        super().__init__(seed, threads)
        self.embeddings = embeddings
        self.missing = 0

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        dim = len(next(iter(self.embeddings.values())))
        unique, inverse = np.unique(ids, return_inverse=True)
        table = np.zeros((len(unique), dim), dtype=np.float32)
        for k, item in enumerate(unique):
            if item in self.embeddings:
                table[k] = self.embeddings[item]
            else:
                self.missing += 1  # zero vector: the model falls back to step/launch effects
        return table[inverse]

    def _step_block(self, steps: np.ndarray, horizon: int) -> np.ndarray:
        return steps[:, None].astype(np.float32)

    def _launch_block(self, launch: pd.DatetimeIndex) -> np.ndarray:
        return _launch_week(launch).astype(np.float32)

    def _features(self, fold, ids, launch, steps, fit):
        return np.hstack([self._embed(ids), self._step_block(steps, fold.horizon), self._launch_block(launch)])


class LightGBMNewText(EmbeddingNewItem):
    name = "lgbm_new_text"


class RidgeNewText(EmbeddingNewItem):
    """Ridge on the embedding, with the step one-hot (a linear model cannot bend a
    numeric step into the launch curve) and the cyclic launch week.

    Fitted on log1p(units) and mapped back with expm1: on raw units a few huge
    launches dominate the squared loss and the linear fit over-forecasts every
    new item (WAPE > 200 in a first try). The penalty is chosen by efficient
    leave-one-out CV over a small grid."""

    name = "ridge_new_text"

    def _step_block(self, steps: np.ndarray, horizon: int) -> np.ndarray:
        return np.eye(horizon, dtype=np.float32)[steps]

    def _launch_block(self, launch: pd.DatetimeIndex) -> np.ndarray:
        return _launch_week(launch)[:, 1:].astype(np.float32)  # sin, cos only: on the embedding's scale

    def _fit_regressor(self, X, y: np.ndarray) -> None:
        from sklearn.linear_model import RidgeCV

        self.regressor = RidgeCV(alphas=np.logspace(-2, 3, 6)).fit(X, np.log1p(np.maximum(y, 0)))

    def predict(self, fold: Fold) -> np.ndarray:
        return np.expm1(super().predict(fold))
