"""Description-kNN launch baseline for products with no sales history.

The kNN baseline of the VISUELLE literature (Skenderi et al., 2022): a new product is
forecast by the launch curves of the `k` existing products whose description
embeddings are most cosine-similar to its own. By default the neighbours are averaged
with equal weight; ``weighted=True`` weights them by their (non-negative) similarity.
"""

from __future__ import annotations

import numpy as np

QUERY_BLOCK = 1024  # queries scored at once: bounds the [block, n] similarity matrix


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
    observed = np.isfinite(curves)
    filled = np.where(observed, curves, 0.0)
    fallback = np.nan_to_num(mean_launch_curve(curves))  # a step no reference observed: 0
    queries, refs = _unit_rows(queries), _unit_rows(refs)
    k = min(k, len(refs))
    blocks = [
        _forecast_block(block, refs, filled, observed, fallback, k, weighted)
        for block in np.split(queries, range(QUERY_BLOCK, len(queries), QUERY_BLOCK))
    ]
    return np.concatenate(blocks) if blocks else np.zeros((0, curves.shape[1]))


def mean_launch_curve(curves: np.ndarray) -> np.ndarray:
    """[horizon]: the mean launch curve, per step the mean of the references that observed it (NaN: none).

    The one definition of "the typical launch" in the package: the ``launch_curve`` model
    forecasts it for every new product, the kNN falls back to it where no neighbour
    observed a step, and the neural ``age_curve`` feature is it on the transformed scale
    (over every series from its start, not only the observed launches).
    ``curves`` is ``[n, horizon]`` units from each reference's launch, NaN (any non-finite
    value) where the reference's data ended first. A reference launched shortly before the
    origin counts only at the ages it reached, so late steps are not pulled toward zero.
    """
    curves = np.asarray(curves, dtype=float)
    out = np.full(curves.shape[1], np.nan)
    for step in range(curves.shape[1]):
        column = curves[:, step]
        seen = column[np.isfinite(column)]
        if seen.size:
            out[step] = seen.mean()
    return out


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


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, so a dot product is the cosine similarity."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _forecast_block(
    queries: np.ndarray,
    refs: np.ndarray,
    filled: np.ndarray,
    observed: np.ndarray,
    fallback: np.ndarray,
    k: int,
    weighted: bool,
) -> np.ndarray:
    similarity = queries @ refs.T  # [b, n]
    neighbours = _top_k(similarity, k)  # [b, k]
    values = filled[neighbours]  # [b, k, h]
    seen = observed[neighbours]
    counts = seen.sum(axis=1)  # [b, h]
    mean = np.divide(values.sum(axis=1), counts, out=np.zeros(counts.shape), where=counts > 0)
    if weighted:
        sims = np.take_along_axis(similarity, neighbours, axis=1).clip(min=0.0)
        weights = sims[:, :, None] * seen
        total = weights.sum(axis=1)
        weighted_mean = (weights * values).sum(axis=1) / np.where(total > 0, total, 1.0)
        mean = np.where(total > 0, weighted_mean, mean)  # all-zero weights: plain mean
    return np.where(counts > 0, mean, fallback[None, :])


def _top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest similarities per row, most similar first."""
    if k < similarity.shape[1]:
        part = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape).copy()
    order = np.argsort(-np.take_along_axis(similarity, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
