"""The command line is generated from the config's field metadata: each key with an option appears once
in each of its verbs' --help, with its default and range; an option name means one thing on every verb;
tune's and trends' settings are config sections, so --config sets them too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_refused, run_cli
from forecast.cli import Renamed, build_parser, config_from_args
from forecast.core.config import RANGES, RunConfig, key_options


def subparser(verb: str):
    return build_parser()._subparsers._group_actions[0].choices[verb]


def parsed(*argv: str) -> RunConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_every_config_option_is_listed_once_per_verb_with_its_default_and_range():
    for item in key_options():
        for verb in item.option.verbs:
            parser = subparser(verb)
            body = parser.format_help().split("\n\n", 1)[1]  # after the usage lines
            assert len(re.findall(rf"^  {re.escape(item.option.flag)}\b(?!-)", body, re.M)) == 1, (verb, item.key)
            [action] = [a for a in parser._actions if item.option.flag in a.option_strings]
            assert action.dest == item.key
            help_text = " ".join(action.help.split())
            default = item.option.verb_defaults.get(verb, item.default)
            if not (default is None or isinstance(default, bool) or default == []):
                shown = ", ".join(map(str, default)) if isinstance(default, list) else str(default)
                assert help_text.count("(default ") == 1 and f"(default {shown}" in help_text, (verb, item.key)
            else:
                assert "(default " not in help_text, (verb, item.key)
            if item.key in RANGES:
                assert str(RANGES[item.key]) in help_text, (verb, item.key)


def test_the_defaults_shown_are_the_configs_and_the_verbs_own():
    fit = " ".join(subparser("fit").format_help().split())
    assert "--horizon HORIZON periods to forecast; predict: at most the saved model's, by default its own " \
           "(default 12; at least 1)" in fit
    assert "--gaps {zero,error} missing periods: zero sales or refuse (default zero)" in fit
    predict = " ".join(subparser("predict").format_help().split())
    assert "by default its own (at least 1)" in predict  # predict's horizon is the saved model's
    tune = " ".join(subparser("tune").format_help().split())
    assert "(default forecast_tuned.csv)" in tune and "(default forecast.csv)" not in tune
    assert "--trials TRIALS finished (complete or pruned) trials" in tune and "(default 20; at least 1)" in tune


def test_one_meaning_per_option_name_on_every_verb():
    flags = [item.option.flag for item in key_options()]
    assert len(flags) == len(set(flags))  # one config key per flag
    meanings: dict[str, set[str]] = {}
    for verb in ("fit", "predict", "tune", "trends", "ui"):
        for action in subparser(verb)._actions:
            if not isinstance(action, Renamed):
                for flag in action.option_strings:
                    meanings.setdefault(flag, set()).add(action.dest)
    assert {flag: dests for flag, dests in meanings.items() if len(dests) > 1} == {}
    assert meanings["--model"] == {"output.model"} and meanings["--model-uri"] == {"model_uri"}
    assert meanings["--tracking-uri"] == {"tracking.uri"}


def test_predict_takes_the_mlflow_model_as_model_uri_and_says_so_for_model(workdir, capsys):
    args = build_parser().parse_args(["predict", "--model-uri", "runs:/abc/model"])
    assert args.model_uri == "runs:/abc/model" and args.model_dir is None
    code, err = run_cli(capsys, ["predict", "--model", "runs:/abc/model"])
    assert_refused(code, err, "predict takes --model-uri, not --model", "--model-uri runs:/abc/model")


@pytest.mark.parametrize("verb", ["fit", "tune", "trends", "ui"])
def test_tracking_uri_is_one_key_shared_by_the_verbs_that_log(verb):
    assert parsed(verb, "--tracking-uri", "sqlite:///elsewhere.db").tracking.uri == "sqlite:///elsewhere.db"


def test_tune_and_trends_settings_come_from_the_config_file_and_options_override_it(workdir):
    Path("cfg.yaml").write_text(yaml.safe_dump({"tune": {"trials": 5, "study_name": "mine"},
                                                "trends": {"min_products": 2, "output": "report.csv"}}))
    tuned = parsed("tune", "--config", "cfg.yaml", "--trials", "7")
    assert (tuned.tune.trials, tuned.tune.study_name, tuned.tune.storage) == (7, "mine", "sqlite:///mlruns/optuna.db")
    trends = parsed("trends", "--config", "cfg.yaml", "--forecast", "f.csv")
    assert (trends.trends.min_products, trends.trends.output, trends.trends.forecast) == (2, "report.csv", "f.csv")


def test_a_bad_tune_or_trends_value_in_the_config_file_is_refused_by_key(workdir, capsys):
    Path("cfg.yaml").write_text("tune:\n  trials: 0\n")
    assert_refused(*run_cli(capsys, ["tune", "--config", "cfg.yaml"]), "tune.trials", "at least 1")
    Path("cfg.yaml").write_text("trends:\n  min_products: many\n")
    assert_refused(*run_cli(capsys, ["trends", "--config", "cfg.yaml"]), "trends.min_products", "'many'", "integer")


def test_tune_exports_a_file_of_its_own_unless_an_option_or_the_config_names_one(workdir):
    assert parsed("fit").output.export == "forecast.csv"
    assert parsed("tune").output.export == "forecast_tuned.csv"
    assert parsed("tune", "--export", "mine.csv").output.export == "mine.csv"
    Path("cfg.yaml").write_text("output:\n  export: other.csv\n")
    assert parsed("tune", "--config", "cfg.yaml").output.export == "other.csv"


def test_option_text_is_read_by_the_keys_declared_type():
    assert parsed("fit", "--devices", "0,1").train.devices == [0, 1]
    assert parsed("fit", "--devices", "auto").train.devices == "auto"
    assert parsed("fit", "--devices", "-1").train.devices == -1
    assert parsed("fit", "--interval", "0.8,0.9").evaluation.interval == [0.8, 0.9]
    assert parsed("fit", "--interval", "0.9").evaluation.interval == 0.9
    assert parsed("fit", "--covariates", "promo, price").data.covariates == ["promo", "price"]
    assert parsed("fit", "--excel").output.excel is True and parsed("fit").output.excel is False
    assert parsed("fit", "--no-progress").train.progress is False
    assert parsed("fit", "--seed", "3").seed == 3


def test_models_is_one_list_fitted_statistical_first_as_before():
    from forecast.models.registry import fitted

    cfg = parsed("fit", "--models", "fusion,ets,ensemble,knn")
    assert cfg.models == ["fusion", "ets", "ensemble", "knn"]
    assert fitted(cfg.models) == ["ets", "knn", "fusion"]  # the backtest's order: as with the two old lists
