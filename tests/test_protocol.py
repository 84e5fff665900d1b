"""The benchmark's paired comparisons and seed averages (experiments/protocol.py) on synthetic errors.

A protocol that calls noise an effect adopts settings at random; one that cannot see a clear effect
adopts nothing. Both must fail here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments import protocol


def _arm(abs_error: np.ndarray, actual: np.ndarray, origins: int = 1, error: np.ndarray | None = None) -> pd.DataFrame:
    """Per (cutoff, item) sums for ``len(abs_error) // origins`` products at each of ``origins`` cut-offs."""
    n = len(abs_error) // origins
    return pd.DataFrame({"cutoff": np.repeat([f"2024-0{k + 1}-01" for k in range(origins)], n),
                         "item_id": np.tile([f"p{i}" for i in range(n)], origins),
                         "abs_error": abs_error, "error": -abs_error if error is None else error, "actual": actual})


def _noisy_pair(effect: float, seed: int = 1, n: int = 400, origins: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two arms on the same products: b's errors, and a's = b's times (1 + effect) times unit-mean noise."""
    rng = np.random.default_rng(seed)
    actual = rng.gamma(2.0, 50.0, n * origins)
    base = actual * rng.uniform(0.2, 1.2, n * origins)
    noise = rng.lognormal(-0.02, 0.2, n * origins)
    return _arm(base * (1 + effect) * noise, actual, origins), _arm(base, actual, origins)


def test_a_clear_improvement_gives_an_interval_below_zero() -> None:
    a, b = _noisy_pair(effect=-0.10)
    result = protocol.paired_bootstrap(a, b, n_boot=500)
    assert result.high < 0 and result.excludes_zero
    assert result.low < result.difference < result.high


def test_pure_noise_gives_an_interval_that_includes_zero() -> None:
    rng = np.random.default_rng(3)
    actual = rng.gamma(2.0, 50.0, 400)
    a = _arm(actual * rng.uniform(0.2, 1.2, 400), actual)  # both arms: the same error law, drawn apart
    b = _arm(actual * rng.uniform(0.2, 1.2, 400), actual)
    result = protocol.paired_bootstrap(a, b, n_boot=500)
    assert result.low < 0 < result.high and not result.excludes_zero


def test_the_point_estimates_are_the_pooled_wape_and_bias_of_each_arm() -> None:
    a = _arm(np.array([10.0, 30.0]), np.array([100.0, 100.0]), error=np.array([-10.0, 30.0]))
    b = _arm(np.array([20.0, 20.0]), np.array([100.0, 100.0]), error=np.array([-20.0, -20.0]))
    result = protocol.paired_bootstrap(a, b, n_boot=50)
    assert (result.wape_a, result.wape_b, result.difference) == pytest.approx((0.2, 0.2, 0.0))
    assert (result.bias_a, result.bias_b) == pytest.approx((0.1, -0.2))
    assert (result.items, result.origins) == (2, 1)


def test_the_interval_is_deterministic_for_a_seed_and_moves_with_it() -> None:
    a, b = _noisy_pair(effect=0.0, seed=5, origins=3)
    first, again = (protocol.paired_bootstrap(a, b, n_boot=300, seed=7) for _ in range(2))
    other = protocol.paired_bootstrap(a, b, n_boot=300, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.origins == 3 and first.items == 400


def test_resampling_origins_widens_the_interval_when_origins_disagree() -> None:
    """At one origin a is much better, at the other much worse: over products alone the pooled
    difference looks certain; drawing origins too shows it is not."""
    rng = np.random.default_rng(11)
    actual = rng.gamma(2.0, 50.0, 400)
    base = actual * 0.5
    a = _arm(np.concatenate([base[:200] * 0.6, base[200:] * 1.5]), actual, origins=2)
    b = _arm(base, actual, origins=2)
    both = protocol.paired_bootstrap(a, b, n_boot=500)
    one = [protocol.paired_bootstrap(a[a.cutoff == c], b[b.cutoff == c], n_boot=500) for c in sorted(set(a.cutoff))]
    assert one[0].high < 0 < one[1].low  # each origin alone: a clear effect, opposite signs
    assert both.high - both.low > max(o.high - o.low for o in one)


def test_arms_on_different_cells_are_refused() -> None:
    a, b = _noisy_pair(effect=0.0)
    with pytest.raises(ValueError, match="same products"):
        protocol.paired_bootstrap(a.iloc[1:], b)
    with pytest.raises(ValueError, match="mean_over_seeds"):
        protocol.paired_bootstrap(pd.concat([a, a]), pd.concat([b, b]))


def test_seed_average_is_the_mean_forecast_of_models_with_several_seeds() -> None:
    frame = pd.DataFrame({"cutoff": "c", "model": ["fusion"] * 4 + ["knn"], "group": "new", "item_id": "p",
                          "date": ["d1", "d2", "d1", "d2", "d1"], "units": [1.0, 2.0, 3.0, 6.0, 5.0],
                          "source": "forecast", "seed": [0, 0, 1, 1, 0]})
    peer = frame[frame.model == "knn"].assign(source="peer", seed=1)  # the same name, another source's seed
    avg = protocol.seed_average(pd.concat([frame, peer]))
    assert avg["model"].tolist() == ["fusion [seed avg]"] * 2  # each knn ran with one seed: no average
    assert avg.set_index("date")["units"].to_dict() == {"d1": 2.0, "d2": 4.0}
    assert (avg["seed"] == protocol.SEED_AVERAGE).all()


def test_mean_over_seeds_gives_the_mean_of_the_seeds_wape() -> None:
    seeds = pd.concat([_arm(np.array([10.0, 30.0]), np.array([100.0, 100.0])).assign(seed=0),
                       _arm(np.array([50.0, 10.0]), np.array([100.0, 100.0])).assign(seed=1)])
    mean = protocol.mean_over_seeds(seeds)
    assert mean["abs_error"].sum() / mean["actual"].sum() == pytest.approx((0.2 + 0.3) / 2)


def test_references_are_peers_the_launch_curve_and_the_simple_models_whatever_their_tag() -> None:
    assert protocol.is_reference("tft", "peer")
    assert protocol.is_reference("mean launch curve", "reference")
    assert protocol.is_reference("launch_curve@t [seed avg]", "forecast")
    assert not protocol.is_reference("fusion:average_text_new@t", "forecast")
    assert not protocol.is_reference("ensemble", "forecast")  # a name it does not know is a candidate


def _comparison(low: float, high: float) -> protocol.Comparison:
    return protocol.Comparison(0.5, 0.5, (low + high) / 2, low, high, 0.0, 0.0, 10, 3)


def test_the_verdict_adopts_only_a_significant_unbiased_improvement_on_validation() -> None:
    better = _comparison(-0.03, -0.01)
    assert protocol.verdict(better, bias=-0.05, split="validation") == "adopt"
    assert protocol.verdict(better, bias=-0.15, split="validation") == "no: bias -15% beyond ±10%"
    assert protocol.verdict(_comparison(-0.03, 0.01), bias=0.0, split="validation") == "no: interval includes 0"
    assert protocol.verdict(_comparison(0.01, 0.03), bias=0.0, split="validation") == "no: worse than the default"
    assert protocol.verdict(better, bias=0.0, split="reported") != "adopt"


def test_a_tagged_candidate_is_compared_with_its_own_model_untagged() -> None:
    assert protocol.default_of("fusion:average_text_new@t [seed avg]", "fusion", "t", "") == \
        "fusion:average_text_new [seed avg]"
    assert protocol.default_of("fusion@t", "fusion", "t", "base") == "fusion@base"
    assert protocol.default_of("fusion@tt", "fusion", "t", "") == "fusion"  # another ablation's: not this one's
    assert protocol.default_of("sequence [seed avg]", "fusion", "", "") == "fusion [seed avg]"
    assert protocol.default_of("fusion", "fusion", "", "") is None


def test_compare_all_pairs_each_tagged_candidate_with_the_default_and_the_best_reference() -> None:
    """An ablation ``t`` that clearly improves on the default; two references, the better one a peer."""
    rng = np.random.default_rng(2)
    actual = rng.gamma(2.0, 50.0, 300)
    arms = {("fusion@t", "forecast"): 0.3, ("fusion", "forecast"): 0.5, ("knn", "forecast"): 0.7,
            ("tft", "peer"): 0.6}
    errors = pd.concat([_arm(actual * share * rng.lognormal(0, 0.1, 300), actual).assign(
        model=model, source=source, seed=0, dataset="d", group="new") for (model, source), share in arms.items()])
    table = (errors.groupby(["dataset", "group", "model", "source"], as_index=False)[["abs_error", "error", "actual"]]
             .sum().assign(wape=lambda f: f.abs_error / f.actual, bias=lambda f: f.error / f.actual, seed_spread=0.0))
    rows = protocol.compare_all(table, errors, "validation", tag="t")
    assert [r["model"] for r in rows] == ["fusion@t"]  # the untagged fusion is the default arm, not a candidate
    row = rows[0]
    assert row["default"] == "fusion" and (row["reference"], row["reference_source"]) == ("tft", "peer")
    assert row["vs_default"]["high"] < 0 and row["vs_reference"]["high"] < 0
    assert row["vs_default"]["difference"] == pytest.approx(row["wape"] - table.set_index("model").wape["fusion"])
    assert row["bias"] == pytest.approx(-row["wape"])  # every error an under-forecast (``_arm``)
    assert row["verdict"] == "no: bias -30% beyond ±10%"  # better, but bought by under-forecasting: not adopted
