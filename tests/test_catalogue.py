"""A large catalogue: products with no sales rows, launching after the data, by the thousand.

The backtest forecasts none of them (nothing to score), the export forecasts all of them, the
loops over them are vectorised, and every long step logs its progress (issue #27; the timings are
in experiments/results/catalogue.md).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.cli import main
from forecast.core import progress
from forecast.core.config import DataConfig, EvalConfig, RunConfig
from forecast.models.encoders import text
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.data.smoothing import centred_moving_average
from forecast.evaluation.backtest import fold_panel, run_backtest
from forecast.models.base import BOTH_GROUPS, NEW, Prediction, forecast_targets
from forecast.outputs.trends import NEW_ITEM, trend_columns
from tests.conftest import write_csv

WEEKS = pd.date_range("2024-01-01", periods=12, freq="W-MON")  # the table ends 2024-03-18
CATALOGUE = 30  # catalogue-only products: no sales rows, launching in the forecast weeks


def catalogue_files(tmp_path, n: int = CATALOGUE):
    """A (history), L (launched in week 8, sold from then on) and C000..(catalogue-only, n of them)."""
    rows = [f"A,{d.date()},{5 + i % 3}" for i, d in enumerate(WEEKS)]
    rows += [f"L,{d.date()},{3 + i % 2}" for i, d in enumerate(WEEKS[8:])]
    launches = [WEEKS[-1] + pd.Timedelta(weeks=1 + i % 3) for i in range(n)]
    products = ["item_id,description,launch_date", "A,red wool coat,", f"L,blue linen dress,{WEEKS[8].date()}"]
    products += [f"C{i:03d},{['green', 'grey', 'white'][i % 3]} cotton scarf no {i},{day.date()}"
                 for i, day in enumerate(launches)]
    return (write_csv(tmp_path, "sales.csv", "item_id,date,units\n" + "\n".join(rows) + "\n"),
            write_csv(tmp_path, "products.csv", "\n".join(products) + "\n"))


@pytest.fixture
def files(tmp_path):
    return catalogue_files(tmp_path)


@pytest.fixture
def panel(files):
    return build_panel(load_tables(*files, DataConfig()))


class Spy:
    """A model that forecasts 1 for every product it is asked for, and records which ones."""

    name, groups = "spy", BOTH_GROUPS

    def __init__(self, seen: list):
        self.seen = seen

    def fit(self, panel, horizon):
        self.seen.append(("fit", panel.n_items))

    def predict(self, panel, horizon):
        rows, start = forecast_targets(panel, self.groups)
        self.seen.append(("predict", panel.item_ids[rows].tolist()))
        return Prediction(self.name, rows, start, np.ones((len(rows), horizon)))


def test_a_backtest_fold_forecasts_no_product_that_never_sells(panel):
    """The catalogue products have nothing to score at any origin: no fold asks a model for them, though each fold's
    panel still holds them (a model may read their descriptions) and the export forecasts them."""
    seen: list = []
    result = run_backtest(panel, {"spy": lambda: Spy(seen)}, EvalConfig(horizon=3, folds=2, step=2))
    fits = [n for what, n in seen if what == "fit"]
    asked = [ids for what, ids in seen if what == "predict"]
    assert fits == [panel.n_items] * 2
    assert asked == [["A", "L"], ["A", "L"]]  # at the origins (weeks 7, 9) L is new, then has history
    assert set(result.table["model"]) == {"spy"}
    rows, _ = forecast_targets(panel, frozenset({NEW}))
    assert sorted(panel.item_ids[rows]) == [f"C{i:03d}" for i in range(CATALOGUE)]  # the refit forecasts them


def test_a_fold_panel_is_the_truncated_panel_but_for_the_never_sold_products(panel):
    known, fold = panel.truncate(7), fold_panel(panel, 7)
    never_sold = ~pd.Index(panel.item_ids).isin(["A", "L"])
    assert np.array_equal(fold.units, known.units, equal_nan=True) and fold.descriptions == known.descriptions
    assert not fold.forecastable[never_sold].any() and fold.forecastable[~never_sold].all()
    assert np.array_equal(fold.end[~never_sold], known.end[~never_sold])


def test_the_trend_of_many_new_products_is_each_one_s_own(panel):
    """trend_columns treats the new products all at once: each row's trend is still the centred moving
    average of its own forecast, and the product with history keeps its tail-based trend and direction."""
    rng = np.random.default_rng(0)
    rows = np.array([0, *range(2, 2 + CATALOGUE)])
    units = rng.poisson(5, size=(len(rows), 4)).astype(float)
    start = np.where(panel.has_history[rows], panel.n_periods, panel.start[rows])
    trend, direction = trend_columns(panel, Prediction("m", rows, start, units), window=3, threshold=0.1)
    for k in range(1, len(rows)):
        np.testing.assert_array_equal(trend[k], centred_moving_average(units[k], 3))
    tail = panel.history(0)[-3:]
    np.testing.assert_allclose(trend[0], centred_moving_average(np.concatenate([tail, units[0]]), 3)[3:])
    assert (direction[1:] == NEW_ITEM).all() and NEW_ITEM not in set(direction[0])


def test_given_trends_are_copied_not_recomputed(panel):
    rows = np.array([2, 3])
    given = np.array([[1.0, 2.0], [3.0, 4.0]])
    trend, _ = trend_columns(panel, Prediction("m", rows, panel.start[rows], np.zeros((2, 2)), trend=given),
                             window=3, threshold=0.1)
    np.testing.assert_array_equal(trend, given)
    assert trend is not given


def test_a_batch_is_padded_as_the_tokenizer_pads_it():
    from forecast.models.encoders.text import _by_token_length, _padded, load_pretrained

    tokenizer, _ = load_pretrained(None)
    texts = ["a red coat", "an oversized relaxed green wool winter coat with pockets", "scarf"]
    tokens, order = _by_token_length([(str(i), t) for i, t in enumerate(texts)], tokenizer, max_tokens=8)
    assert [t for _, t in order] == ["scarf", "a red coat", texts[1]]  # shortest first
    batch = _padded(tokens, tokenizer)
    expected = tokenizer([t for _, t in order], padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])


def test_a_text_model_embeds_with_the_process_threads_not_the_training_ones(monkeypatch, panel):
    """Training runs on train.num_threads (1); the descriptions are embedded before, on the caller's."""
    from forecast.models.neural.estimator import NeuralEstimator

    threads = []
    monkeypatch.setattr(text, "embed_texts", lambda *a, **k: threads.append(torch.get_num_threads()))
    model = NeuralEstimator("fusion", RunConfig().updated({"train.num_threads": 1}))
    monkeypatch.setattr(model, "_fit", lambda *a: threads.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.fit(panel, 3)
    finally:
        torch.set_num_threads(before)
    assert threads == [2, 1]


def test_a_catalogue_fit_logs_its_progress_and_forecasts_every_product(workdir, tmp_path, monkeypatch, caplog):
    """Through the CLI, with progress lines due at every step: the embedding of 132 descriptions (two
    batches) says how far it is, and the export has every catalogue product from its launch."""
    files = catalogue_files(tmp_path, n=130)
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)
    monkeypatch.setattr(text, "_EMBED_CACHE", {})  # an earlier test in this process may have embedded them
    with caplog.at_level(logging.INFO, logger="forecast"):
        code = main(["fit", "--sales", files[0], "--products", files[1], "--horizon", "3", "--folds", "2",
                     "--step", "2", "--models", "moving_average,knn", "--no-progress"])
    assert code == 0
    assert "embedding descriptions: 128/132 (97%)" in caplog.text
    export = pd.read_csv("forecast.csv", dtype={"item_id": str})
    catalogue = export[export["item_id"].str.startswith("C")]
    assert catalogue["item_id"].nunique() == 130 and set(catalogue["model"]) == {"knn"}
    first = catalogue.groupby("item_id")["date"].min()
    launches = pd.read_csv(files[1], dtype=str).set_index("item_id")["launch_date"]
    assert (first == launches.reindex(first.index)).all()
