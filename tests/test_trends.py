"""The trend report's rule (volume and uncertainty decide the direction) and the word occlusion effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.outputs.trends import _horizon_totals, item_totals, occlusion, remove_word, shrink, word_effects, words, z_score

H = 8
LEVEL = 0.8
Z = z_score(LEVEL)


def groups(rows: list[tuple[str, float, float, float, float]]) -> tuple[pd.DataFrame, pd.Series]:
    """(value, reference, forecast, lo, hi) rows and their total, as trend_report hands them to shrink."""
    frame = pd.DataFrame(rows, columns=["value", "reference_units", "forecast_units", "forecast_lo", "forecast_hi"])
    total = frame[["reference_units", "forecast_units"]].sum()
    half = np.sqrt((((frame["forecast_hi"] - frame["forecast_lo"]) / 2) ** 2).sum())  # in quadrature
    total["forecast_lo"], total["forecast_hi"] = total["forecast_units"] - half, total["forecast_units"] + half
    return frame.assign(dimension="word", products=3), total


def poisson(value: str, reference: float, forecast: float) -> tuple:
    """A group whose forecast range is Poisson noise only (what a forecast without a range gets)."""
    half = Z * np.sqrt(forecast)
    return value, reference, forecast, max(forecast - half, 0), forecast + half


def test_a_big_change_on_tiny_volume_is_flat_and_a_modest_one_on_large_volume_with_a_narrow_range_rises():
    frame, total = groups([
        poisson("baroque", 1, 6),  # +500 %, on one unit
        ("lace", 3000, 3600, 3500, 3700),  # +20 %, sure
        poisson("a", 500, 420), poisson("b", 400, 440), poisson("c", 600, 520), poisson("d", 300, 330),
    ])
    report = shrink(frame, total, threshold=0.1, level=LEVEL).set_index("value")
    assert report.loc["baroque", "change"] == pytest.approx(5.0)
    assert report.loc["baroque", "direction"] == "flat"
    assert report.loc["baroque", "shrunk_change"] < 0.5  # pulled toward the overall change, not ranked first
    assert report.loc["lace", "direction"] == "rising"
    assert report.loc["lace", "shrunk_change"] == pytest.approx(0.2, abs=0.02)  # large volume keeps its own
    assert report.loc["lace", "change_lo"] > 0
    assert report["shrunk_change"].idxmax() == "lace"


def test_the_same_change_with_a_wide_range_is_flat():
    narrow, total = groups([("x", 1000, 1300, 1250, 1350), poisson("a", 500, 420), poisson("b", 400, 470),
                            poisson("c", 600, 520)])
    wide = narrow.assign(forecast_lo=np.where(narrow["value"] == "x", 300, narrow["forecast_lo"]),
                         forecast_hi=np.where(narrow["value"] == "x", 2300, narrow["forecast_hi"]))
    assert shrink(narrow, total, 0.1, LEVEL).set_index("value").loc["x", "direction"] == "rising"
    assert shrink(wide, total, 0.1, LEVEL).set_index("value").loc["x", "direction"] == "flat"


def test_the_forecast_range_is_used_when_the_export_has_it_else_a_poisson_band():
    export = pd.DataFrame({"item_id": ["A", "A", "B", "B"], "units": [10.0, 10.0, 5.0, 5.0],
                           "units_p10": [9.0, 9.0, np.nan, 4.0], "units_p90": [12.0, 12.0, np.nan, 6.0]})
    totals = item_totals(export, dispersion=0.0, level=LEVEL)
    assert totals.loc["A", "down2"] == pytest.approx(2.0 ** 2) and totals.loc["A", "up2"] == pytest.approx(4.0 ** 2)
    assert totals.loc["B", "down2"] == pytest.approx(Z ** 2 * 10)  # a blank bound: the band for the whole item


def test_the_report_reads_its_level_from_the_range_columns_and_uses_it():
    from forecast.outputs.trends import report_level

    ninety = pd.DataFrame({"item_id": ["A"], "units": [10.0], "units_p5": [6.0], "units_p95": [15.0]})
    assert report_level(ninety, fallback=0.8) == pytest.approx(0.9)
    assert report_level(ninety[["item_id", "units"]], fallback=0.8) == 0.8  # no range: the configured level
    narrow, total = groups([("x", 1000, 1300, 1250, 1350), poisson("a", 500, 420), poisson("b", 400, 470)])
    at_80, at_90 = (shrink(narrow, total, 0.1, level).set_index("value").loc["x"] for level in (0.8, 0.9))
    assert at_90["change_hi"] - at_90["change_lo"] != pytest.approx(at_80["change_hi"] - at_80["change_lo"])


def test_remove_word_removes_whole_words_only_in_any_case():
    assert remove_word("RED Wool coat, red-ish redcurrant", "red") == "Wool coat, red-ish redcurrant"
    assert remove_word("classic red", "classic") == "red"


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A tiny text-only model trained on the generator, where a colour multiplies demand (yellow 0.3 ...
    red 3.0) and the style word does nothing: a couple of seconds."""
    from forecast.models.neural.estimator import NeuralEstimator

    sales, products = synthetic.write(tmp_path_factory.mktemp("occlusion"), n_items=60, n_periods=60, n_new=0, seed=2)
    panel = build_panel(load_tables(sales, products))
    cfg = RunConfig().updated({"train.max_epochs": 6, "train.progress": False, "neural.hidden_size": 32,
                               "neural.context_length": 12, "train.batch_size": 256, "train.windows_per_epoch": 3000,
                               "train.learning_rate": 5e-3,
                               # the plain text model: no retrieval or age-curve input besides the words
                               "neural.knn_feature": 0, "neural.age_curve": False})
    model = NeuralEstimator("text", cfg)
    model.fit(panel, H)
    return model, panel


def test_occlusion_puts_the_words_with_the_largest_true_effect_on_top(text_model):
    model, panel = text_model
    export = pd.DataFrame({"item_id": np.repeat(panel.item_ids, H), "units": 1.0})
    vocab = sorted({w for d in panel.descriptions for w in d.split()})
    effects = word_effects(model, panel, pd.DataFrame({"dimension": "word", "value": vocab}), export)
    effects = effects.set_index("value")["model_effect_pct"]
    # removing a colour leaves the model to guess the average colour (≈ 1.3): yellow (0.3), grey (0.5) and
    # red (3.0) are the furthest from it
    assert set(effects.abs().nlargest(3).index) == {"yellow", "grey", "red"}
    assert effects["red"] > 20 and effects["yellow"] < -20
    for style in synthetic.STYLES:  # no effect on demand: near zero beside red's
        assert abs(effects[style]) < 0.2 * effects["red"], (style, effects[style])


def test_the_occlusion_forecasts_do_not_depend_on_how_the_descriptions_were_embedded(text_model, monkeypatch):
    """The occlusion's descriptions are embedded once each (memoised; the many products whose edited
    descriptions coincide share one vector) and shortest first in padded batches: the forecasts with and
    without each word must be those of descriptions embedded one at a time, unpadded."""
    from forecast.models.encoders import text

    model, panel = text_model
    nt = model.config.neural
    descriptions = panel.descriptions
    rows = np.repeat(np.arange(panel.n_items), 2)
    drop = [sorted(words(descriptions[r]))[k % 2] for k, r in enumerate(rows)]
    edited = {remove_word(descriptions[r], w) for r, w in zip(rows, drop)}
    assert len(edited) < len(rows)  # some edited descriptions coincide
    monkeypatch.setattr(text, "_EMBED_CACHE", {})
    batched = occlusion(model, panel, rows, drop, H)
    monkeypatch.setattr(text, "_EMBED_CACHE", {})
    for description in sorted({*descriptions, *edited}):
        text.embed_texts([description], nt.text_encoder, nt.max_tokens)
    alone = occlusion(model, panel, rows, drop, H)
    pd.testing.assert_frame_equal(batched, alone, rtol=1e-5)
    assert (batched["units"] - batched["without"]).abs().max() > 1  # the words move the forecast


def test_occlusion_forecasts_with_the_words_are_the_real_forecasts(tmp_path):
    """With retrieval on, a product's neighbours depend on the panel forecast: the occlusion's forecast
    with all words must be the model's forecast of the whole panel, and a copy without a word must not
    change it."""
    from forecast.models.neural.estimator import NeuralEstimator

    sales, products = synthetic.write(tmp_path, n_items=30, n_periods=40, n_new=0, seed=3)
    panel = build_panel(load_tables(sales, products))
    cfg = RunConfig().updated({"train.max_epochs": 1, "train.progress": False, "neural.hidden_size": 16,
                               "neural.context_length": 8, "train.windows_per_epoch": 500, "neural.knn_feature": 3})
    model = NeuralEstimator("text", cfg)
    model.fit(panel, H)
    real = _horizon_totals(model, panel, H)  # the model's forecast of the whole panel, per product
    rows = np.array([0, 0, 7, 12])
    drop = [sorted(words(panel.descriptions[r]))[k % 2] for k, r in enumerate(rows)]
    pairs = occlusion(model, panel, rows, drop, H)
    np.testing.assert_allclose(pairs["units"], real[rows], rtol=1e-5)
    assert not np.allclose(pairs["units"], pairs["without"])
