"""The config refuses what it does not know: every value is checked against its declared type and
choices, from YAML (--config), from a command-line option and from a search space, before any run opens."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import refused
from forecast.core.config import RunConfig
from forecast.core.errors import ConfigError
from forecast.tuning import load_search_space

# dotted key, bad value, what the one error line must say
BAD_VALUES = [
    ("data.gaps", "Error", ["data.gaps", "'Error'", "zero, error"]),
    ("neural.fusion", "gate", ["neural.fusion", "'gate'", "gated, init"]),
    ("neural.sequence_encoder", "gru", ["neural.sequence_encoder", "'gru'", "lstm, attention"]),
    ("train.lr_schedule", "cosine", ["train.lr_schedule", "'cosine'", "constant, onecycle"]),
    ("evaluation.horizon", "abc", ["evaluation.horizon", "'abc'", "integer"]),
    ("evaluation.horizon", 2.5, ["evaluation.horizon", "2.5", "integer"]),
    ("evaluation.horizon", True, ["evaluation.horizon", "True", "integer"]),
    ("models", "moving_average", ["models", "'moving_average'", "list"]),
]

# the same mistakes through the options that set those keys
BAD_OPTIONS = [
    (["--gaps", "Error"], ["--gaps", "'Error'", "zero", "error"]),
    (["--horizon", "abc"], ["--horizon", "'abc'"]),
    (["--horizon", "2.5"], ["--horizon", "'2.5'"]),
    (["--horizon", "true"], ["--horizon", "'true'"]),
    (["--models", "moving_averag"], ["unknown model", "'moving_averag'", "moving_average"]),
    (["--interval", "1.5"], ["evaluation.interval", "between 0 and 1", "1.5"]),
    (["--interval", "ninety"], ["--interval", "'ninety'"]),
]


def nested(key: str, value) -> dict:
    section, _, leaf = key.rpartition(".")
    return {section: {leaf: value}} if section else {leaf: value}


@pytest.mark.parametrize(("key", "value", "needles"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_in_config_file_is_refused(workdir, capsys, key, value, needles):
    Path("cfg.yaml").write_text(yaml.safe_dump(nested(key, value)))
    refused(capsys, ["fit", "--config", "cfg.yaml", "--no-progress"], *needles)


@pytest.mark.parametrize(("options", "needles"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_value_of_an_option_is_refused(workdir, capsys, options, needles):
    refused(capsys, ["fit", *options, "--no-progress"], *needles)


@pytest.mark.parametrize(("key", "value", "needles"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_overrides_are_checked_like_the_file(key, value, needles):
    with pytest.raises(ConfigError) as err:
        RunConfig().updated({key: value})
    for needle in needles:
        assert needle in str(err.value)


def test_well_typed_values_pass_and_an_integer_number_is_a_float():
    cfg = RunConfig().updated({"neural.dropout": 0, "evaluation.season_length": None, "neural.fusion": "init",
                               "train.limit_train_batches": 0.5, "models": ["ets"]})
    assert cfg.neural.dropout == 0.0 and isinstance(cfg.neural.dropout, float)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("entry", [
    "neural.fusion: {type: categorical, choices: [gated, gate]}",
    "evaluation.horizon: {type: float, low: 2.5, high: 6.0}",
    "neural.hidden_size: {type: categorical, choices: []}",
])
def test_search_space_values_are_checked_before_trial_0(tmp_path, entry):
    path = tmp_path / "space.yaml"
    path.write_text(entry + "\n")
    with pytest.raises(ConfigError, match=entry.split(":")[0].replace(".", r"\.")):
        load_search_space(path)


# --- one list of models; configs written with the two old lists still read ---------------------------
def test_a_config_with_the_two_old_model_lists_reads_as_one_list_in_their_order(workdir):
    Path("old.yaml").write_text("baselines:\n  models: [ets, knn]\n  n_jobs: 2\nneural:\n  models: [fusion]\n")
    cfg = RunConfig.from_yaml("old.yaml")
    assert cfg.models == ["ets", "knn", "fusion"] and cfg.baselines.n_jobs == 2
    assert "models" not in cfg.to_dict()["baselines"] and "models" not in cfg.to_dict()["neural"]


def test_old_and_new_model_lists_together_or_an_old_key_in_code_are_refused_by_name(workdir, capsys):
    Path("both.yaml").write_text("models: [ets]\nneural:\n  models: [fusion]\n")
    refused(capsys, ["fit", "--config", "both.yaml", "--no-progress"], "models and neural.models", "keep only models")
    with pytest.raises(ConfigError, match="unknown configuration key 'baselines.models'; models is one list"):
        RunConfig().updated({"baselines.models": ["ets"]})
