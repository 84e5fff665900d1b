"""The address of an experiment's runs table in MLflow's model-training view, with the headline
metrics as its columns.

MLflow 3's UI opens an experiment on its GenAI view (traces) unless the address asks for
``workflowType=machine_learning``; its runs table shows the Source, Models and Dataset
columns and hides every metric until they are ticked one by one. The UI's "share view"
mechanism stores a view (columns, sort) as the experiment tag
``mlflow.sharedViewState.<key>`` and opens it from ``viewStateShareKey=<key>`` in the
address: :func:`publish` writes one view holding each group's WAPE, bias and coverage,
:func:`runs_table_url` is the address that opens it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

GROUPS = ("history", "new")
HEADLINE = ("wape", "bias", "coverage")  # what a reader compares models on (WAPE chooses them)
SHARE_KEY = "forecast-headline"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI's prefix for a shared view's experiment tag


def headline_columns() -> list[str]:
    """The runs table's columns, in MLflow UI's key format (``metrics.`history/wape```)."""
    metrics = [f"metrics.`{group}/{name}`" for group in GROUPS for name in HEADLINE]
    return ["attributes.`Duration`", "attributes.`Models`", "attributes.`Dataset`", *metrics]


def view_state() -> dict:
    """The shared view: the headline columns (sort and filters stay the UI's defaults)."""
    return {"selectedColumns": headline_columns()}


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
