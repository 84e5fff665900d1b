"""A saved model as an MLflow pyfunc model (``mlflow.pyfunc.load_model("runs:/<id>/model")``).

Built the way mlforecast's ``flavor.py`` builds its flavour: the model's data is the folder
forecast.outputs.artifact writes (a neural model's safetensors weights, the RunConfig as YAML,
metadata as JSON with a checksum, the forecast ranges as JSON; for a chosen ensemble, its
members' folders and weights beside them), and this module is the pyfunc
``loader_module``: MLflow calls :func:`_load_pyfunc` on that folder. Nothing is pickled.

Input: one DataFrame holding both tables of the data contract, stacked, with a ``table``
column saying which table a row belongs to (``sales`` or ``products``) and every other cell
as text, as a CSV holds it (``""`` where a table has no such column). :func:`tables_frame`
builds it from two frames. The rows are validated exactly like the CLI's files.

Output: the export a ``fit`` writes (``item_id, date, model, units, units_p10, units_p90, ...``)
for every product the model forecasts.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd

from forecast.core.errors import DataError

TABLES = ("sales", "products")
REQUIRED_INPUTS = ("table", "item_id")  # every other column is optional in the signature


def tables_frame(sales: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """The model's input: both tables stacked under a ``table`` column, every cell text."""
    frame = pd.concat([sales.assign(table="sales"), products.assign(table="products")], ignore_index=True)
    frame = frame[["table", *(c for c in frame.columns if c != "table")]]
    return frame.astype(object).where(frame.notna(), "").astype(str)


def split_tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales, products) from the stacked input, each without the columns it leaves empty."""
    if "table" not in frame:
        raise DataError(f"model input: no 'table' column (one of {', '.join(TABLES)} per row)")
    table = frame["table"].astype(str)
    unknown = sorted(set(table) - set(TABLES))
    if unknown:
        raise DataError(f"model input: column 'table' holds {unknown}; expected {', '.join(TABLES)}")
    parts = []
    for name in TABLES:
        part = frame[table == name].drop(columns="table").fillna("").astype(str)
        parts.append(part.loc[:, (part != "").any()])
    return parts[0], parts[1]


def example_input(sales_path: str, products_path: str, items: int = 2) -> pd.DataFrame:
    """A few products of the training tables and their sales rows: the logged input example."""
    from forecast.data.contract import read_table

    products = read_table(products_path).head(items)
    sales = read_table(sales_path)
    return tables_frame(sales[sales["item_id"].astype(str).isin(products["item_id"].astype(str))], products)


def requirements() -> list[str]:
    """pip requirements of a logged model: this package's own runtime dependencies (all on PyPI), not
    ``forecast`` itself, a name a clean serving environment would look up in the public index: the
    package's code travels inside the model instead (:func:`code_paths`)."""
    from importlib.metadata import requires

    try:
        found = requires("forecast") or []
    except PackageNotFoundError:
        return []
    return [r for r in found if "extra ==" not in r]


def code_paths() -> list[str]:
    """The ``forecast`` package folder, copied into the logged model so that MLflow puts it on the
    path of whoever loads it (``mlflow.pyfunc.load_model``, ``mlflow models serve``)."""
    return [str(Path(__file__).resolve().parents[1])]


DATE_COLUMNS = ("date", "origin")  # the export's dates, as datetimes in the model's typed output


def typed_output(frame: pd.DataFrame) -> pd.DataFrame:
    """The export as the model's signature types it: dates as datetimes (the CSV holds them as text)."""
    out = frame.copy()
    for column in DATE_COLUMNS:
        if column in out:
            out[column] = pd.to_datetime(out[column])
    return out


class ForecastModel:
    """What ``mlflow.pyfunc.load_model`` wraps: a saved model folder and its predict."""

    def __init__(self, directory: Path):
        self.directory = directory

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """The forecast export for the stacked tables (see the module docstring)."""
        from forecast.outputs import artifact
        from forecast.core.config import RunConfig
        from forecast.data.loading import load_panel

        sales, products = split_tables(model_input)
        with TemporaryDirectory() as tmp:
            paths = {name: str(Path(tmp) / f"{name}.csv") for name in TABLES}
            sales.to_csv(paths["sales"], index=False)
            products.to_csv(paths["products"], index=False)
            cfg = RunConfig.from_yaml(self.directory / artifact.CONFIG).updated({
                "data.sales": paths["sales"], "data.products": paths["products"], "data.signals": None,
                "output.export": None})
            frame = artifact.load(self.directory).forecast(load_panel(cfg), cfg, source="model input")
            return typed_output(frame)


def _load_pyfunc(path: str) -> ForecastModel:
    """MLflow's entry point for a pyfunc ``loader_module``: ``path`` is the model's data folder."""
    return ForecastModel(Path(path))
