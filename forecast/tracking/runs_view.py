"""The address of an experiment's runs table in MLflow's model-training view, with the headline
metrics as its columns.

MLflow 3's UI opens an experiment on its GenAI view (traces) unless the address asks for
``workflowType=machine_learning``; its runs table shows the Source, Models and Dataset
columns and hides every metric until they are ticked one by one. The UI's "share view"
mechanism stores a view (columns, sort) as the experiment tag
``mlflow.sharedViewState.<key>`` and opens it from ``viewStateShareKey=<key>`` in the
address: :func:`publish` writes one view holding each group's WAPE, bias and coverage,
:func:`runs_table_url` is the address that opens it.

Checked in headless Chromium against MLflow 3.17's UI (``experiments/screenshot_ui.py``): the view's
``selectedColumns`` choose the columns, but metric columns come in key order and at 100 px unless
``columnOrder`` and ``columnWidths`` (keyed by the grid's column ids) say otherwise; a shared view
cannot expand rows (the UI drops ``runsExpanded`` from it). A fit's model runs show as rows under its
run because each child run is tagged :data:`CHILD_RUN_TAGS`: the UI expands the parent of runs of
type ``evaluation`` while the browser holds no saved view of the experiment (a view saved by using
the plain runs page keeps its own expanded rows; ``+`` beside a fit opens it).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

GROUPS = ("history", "new")
HEADLINE = ("wape", "bias", "coverage")  # what a reader compares models on (WAPE chooses them)
SHARE_KEY = "forecast-headline"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI's prefix for a shared view's experiment tag
# mlflow.utils.mlflow_tags.MLFLOW_RUN_TYPE = the UI's "evaluation" run type: a child run that holds a
# model's backtest scores is one, and the UI shows such runs expanded under their parent
CHILD_RUN_TAGS = {"mlflow.runType": "evaluation"}
# the grid's own ids of columns the view orders (not the selection keys: Duration is "duration")
RUN_NAME, CREATED, DURATION = "attributes.`Run Name`", "runDateAndNestInfo", "duration"
MODELS, DATASET = "attributes.`Models`", "attributes.`Dataset`"
WIDTHS = {RUN_NAME: 280, "metric": 120}  # px: a fit's run name and a header such as history/coverage


def headline_metrics() -> list[str]:
    """The headline metric columns in reading order, in MLflow UI's key format (``metrics.`history/wape```)."""
    return [f"metrics.`{group}/{name}`" for group in GROUPS for name in HEADLINE]


def headline_columns() -> list[str]:
    """The runs table's columns, in MLflow UI's key format."""
    return ["attributes.`Duration`", MODELS, DATASET, *headline_metrics()]


def view_state() -> dict:
    """The shared view: the headline columns, the metrics right after the run's name and date, WAPE first
    in each group (the UI would sort them by key), wide enough to read (sort and filters stay the UI's)."""
    metrics = headline_metrics()
    return {"selectedColumns": headline_columns(),
            "columnOrder": [RUN_NAME, CREATED, *metrics, DURATION, MODELS, DATASET],
            "columnWidths": {RUN_NAME: WIDTHS[RUN_NAME]} | dict.fromkeys(metrics, WIDTHS["metric"])}


def publish(client, experiment_id: str) -> None:
    """Store the headline view as the experiment's shared view (idempotent: rewritten only if it differs)."""
    key, value = SHARED_VIEW_TAG + SHARE_KEY, json.dumps(view_state())
    if client.get_experiment(experiment_id).tags.get(key) != value:
        client.set_experiment_tag(experiment_id, key, value)


def runs_table_url(base: str, experiment_id: str) -> str:
    """The runs table of the experiment in the model-training view, opened on the headline view."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": SHARE_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def local_store_missing(uri: str) -> Path | None:
    """The database file of a local sqlite store when it does not exist yet (``ui`` would create an
    empty one); None for an existing file or a server."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    return None if path.exists() else path
