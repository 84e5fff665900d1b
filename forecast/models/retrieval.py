"""Description retrieval over launch curves: the one kNN of the package.

A product is compared with reference products (ones whose launch the data saw) by the cosine
similarity of their description embeddings; its forecast or feature is the mean launch curve of
the ``k`` most similar ones. Two models read it:

- the ``knn`` baseline (:mod:`forecast.models.baselines.knn`), the kNN of the VISUELLE literature
  (Skenderi et al., 2022): the mean of the neighbours' curves, a step none of them observed filled
  with :func:`mean_launch_curve`, optionally weighted by similarity;
- the neural ``neighbours`` feature (:mod:`forecast.models.neural.features`): the same mean, where a
  product is never its own neighbour (its curve is its training target), found by id, so that copies
  of a product (the trend report's occlusion) are one reference.

:func:`mean_launch_curve` (the typical launch) and ``ATTRIBUTE_PRIOR`` (how much an attribute
value's launch curve is shrunk toward it) are the other launch-curve definitions both model
families share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUERY_BLOCK = 1024  # queries scored at once: bounds the [block, n] similarity matrix and [block, k, h] curves
ATTRIBUTE_PRIOR = 5.0  # weight, in products, of the overall launch curve in an attribute value's mean curve


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


def neighbour_mean(queries: np.ndarray, references: np.ndarray, curves: np.ndarray, k: int, *,
                   weighted: bool = False, query_ids: np.ndarray | None = None,
                   reference_ids: np.ndarray | None = None, ordered: bool = True) -> np.ndarray:
    """[m, horizon]: per query, the mean of ``curves`` over its ``k`` most similar references (NaN at a
    step none of them observed).

    ``queries`` [m, d] and ``references`` [n, d] are description embeddings, compared by cosine
    similarity in their own dtype (a zero-norm row has similarity 0 to all); ``curves`` [n, horizon]
    holds each reference's units from its launch, NaN where not observed. At each step only the
    neighbours that observed it count. ``weighted``: neighbours weighted by their similarity clipped
    at 0 (a plain mean where all weights are 0). With ids, a query is never the neighbour of a
    reference with its own id, and a reference id listed twice counts once (its first row); then at
    most ``n - 1`` neighbours are used, and with fewer than two references every value is NaN.
    ``ordered``: neighbours summed most similar first (ties by index) rather than in selection order;
    the mean is the same up to float rounding, so each caller keeps the order it always had.
    """
    horizon = curves.shape[1]
    query_codes = ref_codes = None
    if reference_ids is not None:
        query_codes, ref_codes, first = _id_codes(query_ids, reference_ids)
        references, curves, ref_codes = references[first], curves[first], ref_codes[first]
        if len(first) <= 1:
            return np.full((len(queries), horizon), np.nan)
        k = min(k, len(first) - 1)
    else:
        k = min(k, len(references))
    observed = np.isfinite(curves)
    filled = np.where(observed, curves, 0.0)
    queries, references = unit_rows(queries), unit_rows(references)
    out = np.empty((len(queries), horizon))
    for lo in range(0, len(queries), QUERY_BLOCK):
        similarity = queries[lo:lo + QUERY_BLOCK] @ references.T  # [b, n]
        if ref_codes is not None:
            similarity[ref_codes[None, :] == query_codes[lo:lo + QUERY_BLOCK, None]] = -np.inf
        neighbours = top_k(similarity, k, ordered)  # [b, k]
        out[lo:lo + QUERY_BLOCK] = _mean_curve(similarity, neighbours, filled, observed, weighted)
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, so a dot product is the cosine similarity (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def top_k(similarity: np.ndarray, k: int, ordered: bool = True) -> np.ndarray:
    """[b, k] indices of the k largest similarities per row; ``ordered``: most similar first."""
    if k < similarity.shape[1]:
        part = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape).copy()
    if not ordered:
        return part
    order = np.argsort(-np.take_along_axis(similarity, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _mean_curve(similarity: np.ndarray, neighbours: np.ndarray, filled: np.ndarray, observed: np.ndarray,
                weighted: bool) -> np.ndarray:
    """[b, horizon]: the (weighted) mean of the neighbours' observed values per step, NaN where none observed."""
    values = filled[neighbours]  # [b, k, h]
    seen = observed[neighbours]
    counts = seen.sum(axis=1)  # [b, h]
    mean = np.divide(values.sum(axis=1), counts, out=np.full(counts.shape, np.nan), where=counts > 0)
    if weighted:
        sims = np.take_along_axis(similarity, neighbours, axis=1).clip(min=0.0)
        weights = sims[:, :, None] * seen
        total = weights.sum(axis=1)
        weighted_mean = (weights * values).sum(axis=1) / np.where(total > 0, total, 1.0)
        mean = np.where(total > 0, weighted_mean, mean)  # all-zero weights: plain mean
    return mean


def _id_codes(query_ids: np.ndarray, reference_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query codes, reference codes, each reference id's first row): equal ids share a code."""
    codes = pd.factorize(np.concatenate([np.asarray(reference_ids), np.asarray(query_ids)]))[0]
    ref_codes, query_codes = codes[:len(reference_ids)], codes[len(reference_ids):]
    return query_codes, ref_codes, np.unique(ref_codes, return_index=True)[1]
