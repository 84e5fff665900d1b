"""Description-kNN launch baseline for products with no sales history.

The kNN baseline of the VISUELLE literature (Skenderi et al., 2022), on the package's one retrieval
(:mod:`forecast.models.retrieval`, shared with the neural ``neighbours`` feature): a new product is
forecast by the launch curves of the `k` existing products whose description
embeddings are most cosine-similar to its own. By default the neighbours are averaged
with equal weight; ``weighted=True`` weights them by their (non-negative) similarity.
"""

from __future__ import annotations

import numpy as np

from forecast.models.retrieval import mean_launch_curve, neighbour_mean

__all__ = ["knn_launch_forecast", "mean_launch_curve"]


def knn_launch_forecast(
    query_embeddings: np.ndarray,
    reference_embeddings: np.ndarray,
    reference_curves: np.ndarray,
    k: int,
    *,
    weighted: bool = False,
) -> np.ndarray:
    """Per-step average of the `k` most similar reference launch curves.

    Parameters
    ----------
    query_embeddings : [m, d] description embeddings of the new products.
    reference_embeddings : [n, d] embeddings of products with a launch history.
    reference_curves : [n, horizon] units sold in the first `horizon` periods after
        launch; NaN (any non-finite value) where the period was not observed.
    k : neighbours per query (all references when fewer than `k` exist).
    weighted : weight neighbours by cosine similarity clipped at 0 instead of equally.

    Returns
    -------
    [m, horizon] forecasts. At each step only neighbours that observed it count; a
    step none of them observed gets the mean over all references that did, and 0
    when no reference observed it. A zero-norm embedding has similarity 0 to all.
    """
    queries, refs, curves = _validate(query_embeddings, reference_embeddings, reference_curves, k)
    mean = neighbour_mean(queries, refs, curves, k, weighted=weighted)
    fallback = np.nan_to_num(mean_launch_curve(curves))  # a step no reference observed: 0
    return np.where(np.isnan(mean), fallback[None, :], mean)


def _validate(
    queries: np.ndarray, refs: np.ndarray, curves: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float arrays of consistent shapes, or a ValueError saying what does not fit."""
    queries = np.asarray(queries, dtype=float)
    refs = np.asarray(refs, dtype=float)
    curves = np.asarray(curves, dtype=float)
    if queries.ndim != 2 or refs.ndim != 2 or curves.ndim != 2:
        raise ValueError(
            "knn: expected 2-D query embeddings, reference embeddings and reference curves, "
            f"got shapes {queries.shape}, {refs.shape}, {curves.shape}"
        )
    if len(refs) == 0:
        raise ValueError("knn: no reference products (reference_embeddings is empty)")
    if queries.shape[1] != refs.shape[1]:
        raise ValueError(
            f"knn: query embeddings have dimension {queries.shape[1]}, "
            f"reference embeddings {refs.shape[1]}"
        )
    if curves.shape[0] != refs.shape[0]:
        raise ValueError(
            f"knn: {refs.shape[0]} reference embeddings but {curves.shape[0]} reference curves"
        )
    if curves.shape[1] == 0:
        raise ValueError("knn: reference curves have horizon 0")
    if not (np.all(np.isfinite(queries)) and np.all(np.isfinite(refs))):
        raise ValueError("knn: embeddings contain NaN or infinite values")
    if int(k) != k or k < 1:
        raise ValueError(f"knn: k must be a positive integer, got {k!r}")
    return queries, refs, curves
