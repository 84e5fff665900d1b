"""The one description retrieval (forecast.models.retrieval) behind the ``knn`` baseline and the neural
``neighbours`` feature.

``tests/data/retrieval_before.npz`` holds what the two separate kNN implementations computed on the small
synthetic panel below before they were merged (commit 01d2f87, written by :func:`write_before` on that
code): the baseline's forecasts (plain and similarity-weighted) and the neighbour-feature arrays, in
training and against a saved model's reference products (then ``PanelFeatures.neighbours``, now its
``inputs["neighbours"]``). The test recomputes them with the current code
and asks for equality to the bit. Embeddings come from a fixed bag-of-words stand-in, so the comparison
is about retrieval, not about the text encoder. To regenerate (only when the retrieval is *meant* to
change): ``PYTHONPATH=. python -c "from tests.test_retrieval import write_before; write_before()"``.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import Panel, build_panel

BEFORE = Path(__file__).parent / "data" / "retrieval_before.npz"
H, K = 8, 3


def bag_of_words(texts: list[str], path: str | None = None, max_tokens: int = 32, **_) -> np.ndarray:
    """A deterministic stand-in for the sentence encoder: the sum of one fixed random vector per word, as
    float32 like the encoder's. Shared words make products similar; equal descriptions tie."""
    out = np.zeros((len(texts), 8))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=8)
    return out.astype(np.float32)


def synthetic_panel() -> Panel:
    with tempfile.TemporaryDirectory() as folder:
        sales, products = synthetic.write(folder, n_items=30, n_periods=24, n_new=6, seed=3)
        return build_panel(load_tables(sales, products)).truncate(16)  # late launches: steps no one observed


def retrieval_arrays(panel: Panel) -> dict[str, np.ndarray]:
    """Everything the kNN computes on ``panel``, through the public functions that existed before the merge."""
    from forecast.models.baselines.knn import knn_launch_forecast
    from forecast.models.neural.features import Reference, Scaler, build_features, neighbour_curves
    from forecast.models.registry import build

    config = RunConfig().updated({"baselines.knn_neighbours": K, "neural.knn_feature": K, "neural.age_curve": False,
                                  "neural.text_mode": "frozen", "neural.context_length": 4})
    embeddings = bag_of_words(panel.descriptions)
    start = panel.start.astype(np.int64)
    scaler = Scaler.fit(panel, end=panel.n_periods, transform="sqrt", scaling="global", launch_periods=H)
    reference = Reference.of(panel, scaler, config, H, use_text=True)
    later = panel.take(np.r_[panel.n_items - 10:panel.n_items, 3, 3, 7])  # some products, two copied
    launched = np.flatnonzero(panel.has_history)
    curves = panel.window(launched, panel.start[launched], H)
    return {
        "panel_units": np.nan_to_num(panel.units, nan=-1.0),  # guards the input: a changed generator is no regression
        "baseline": build("knn", config).predict(panel, H).units,
        "baseline_one_neighbour": build("knn", config.updated({"baselines.knn_neighbours": 1})).predict(panel, H).units,
        "weighted": knn_launch_forecast(embeddings, embeddings[launched], curves, K, weighted=True),
        "neighbour_curves": neighbour_curves(embeddings, panel.units, start, K, H),
        "one_neighbour_curve": neighbour_curves(embeddings, panel.units, start, 1, H),  # NaN: a step it lacks
        "neighbours_in_training": build_features(panel, scaler, config, H, True).inputs["neighbours"],
        "neighbours_from_reference": build_features(later, scaler, config, H, True, reference).inputs["neighbours"],
    }


def write_before() -> None:
    """Store :func:`retrieval_arrays` of the code as it is now (see the module docstring)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("forecast.models.encoders.text.embed_texts", bag_of_words)
        arrays = retrieval_arrays(synthetic_panel())
    BEFORE.parent.mkdir(exist_ok=True)
    np.savez(BEFORE, **arrays)


def test_the_baseline_and_the_feature_retrieve_what_the_two_old_implementations_did(monkeypatch):
    monkeypatch.setattr("forecast.models.encoders.text.embed_texts", bag_of_words)
    now = retrieval_arrays(synthetic_panel())
    before = np.load(BEFORE)
    np.testing.assert_array_equal(now.pop("panel_units"), before["panel_units"],
                                  err_msg="the synthetic panel changed: the stored arrays no longer apply")
    assert sorted(now) == sorted(set(before.files) - {"panel_units"})
    for name, values in now.items():
        assert values.shape == before[name].shape, name
        np.testing.assert_array_equal(values, before[name], err_msg=name)  # NaN where NaN, else to the bit
