"""The table of the neural models' input blocks (forecast.models.neural.blocks): what an entry
declares is what the features gather and what each network variant reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import Panel, build_panel
from forecast.models.neural import blocks
from forecast.models.neural.blocks import BLOCKS, PARTS, Block, history_blocks
from forecast.models.neural.network import ForecastNetwork, NetworkSpec
from tests.test_gather import H, all_windows, features


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Panel:
    sales, products = synthetic.write(tmp_path_factory.mktemp("blocks"), n_items=12, n_periods=20, n_new=2, seed=2)
    return build_panel(load_tables(sales, products))


def test_each_block_names_a_part_once_and_the_option_that_turns_it_on_is_a_config_key():
    assert {b.part for b in BLOCKS} == set(PARTS)
    assert len({(b.part, b.name) for b in BLOCKS}) == len(BLOCKS)
    for block in BLOCKS:
        assert (block.input is None) == (block.option is None), block.name
        if block.option:
            section, key = block.option.split(".")
            assert hasattr(getattr(RunConfig(), section), key), block.option


def test_the_sales_history_blocks_are_declared_in_the_table():
    """The blocks the text-only model must never read: the context's sales and the static sales summary."""
    assert history_blocks("static") == {"sales"}
    assert history_blocks("context") == {"units", "observed", "age"}
    assert history_blocks("future") == set()


def test_a_new_block_is_one_entry_gathered_sized_and_skipped_by_the_text_model_when_it_reads_history(panel,
                                                                                                       monkeypatch):
    extra = Block("static", "last_sale", lambda w: torch.nan_to_num(w.context_z[:, -1:]).float(), reads_history=True)
    monkeypatch.setattr(blocks, "BLOCKS", (*BLOCKS, extra))
    f = features(panel, text=None)
    items, origins = all_windows(panel)
    batch = f.gather(items[:7], origins[:7])
    assert list(batch["static"]) == ["age", "sales", "price_plan", "last_sale"]
    expected = np.nan_to_num(f.z[items[:7], origins[:7] + f.L - 1]).astype(np.float32)[:, None]
    np.testing.assert_array_equal(batch["static"]["last_sale"].numpy(), expected)
    assert f.widths["static"]["last_sale"] == 1
    for variant, reads in (("sequence", True), ("text", False)):
        spec = NetworkSpec(variant, f.widths, H, 4, 8, 0.0, "lstm", "gated")
        assert ("last_sale" in spec.read_blocks("static")) is reads
        if variant == "sequence":
            net = ForecastNetwork(spec).eval()
            assert net.summary[0].in_features == 8 + sum(f.widths["static"].values())
            assert net(batch)["demand"].shape == (7, H)


def test_a_new_launch_curve_block_is_one_entry_and_its_input(panel, monkeypatch):
    """A ``per_age`` block: each item's curve [n, A] read at each horizon step's age since start."""
    extra = Block("future", "own_curve", blocks._cells("future", "own_curve"), input="own_curve",
                  option="neural.age_curve", per_age=True)
    monkeypatch.setattr(blocks, "BLOCKS", (*BLOCKS, extra))
    f = features(panel, text=None)
    curve = np.arange(panel.n_items * 3, dtype=float).reshape(panel.n_items, 3)
    assert "own_curve" not in f.widths["future"]  # off until its input is there
    f = features(panel, text=None)
    f.inputs["own_curve"] = curve
    item, launch = 0, int(panel.start[0])
    batch = f.gather(np.array([item]), np.array([launch]))
    np.testing.assert_array_equal(batch["future"]["own_curve"][0, :, 0].numpy(),
                                  curve[item, np.minimum(np.arange(H), 2)].astype(np.float32))
    assert f.widths["future"]["own_curve"] == 1


@pytest.mark.parametrize("part", PARTS)
def test_a_block_is_gathered_only_when_its_input_is_there(panel, part):
    f = features(panel, text=None, age_curve=True)
    optional = {b.name for b in BLOCKS if b.part == part and b.input}
    gathered = set(f.widths[part])
    assert gathered & optional == ({"age_curve"} if part == "future" else set())
