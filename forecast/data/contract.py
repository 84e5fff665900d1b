"""The data contract: read the sales and products tables and validate them up front.

Every check runs before any model is fitted, and every failure is a
:class:`~forecast.errors.DataError` that names the file, the column and the first
offending rows (as line numbers in the file, header = line 1), so a planner can
open the file and fix it.

sales:    item_id, date, units, [price], [further numeric covariates]
products: item_id, description, [attribute columns], [launch_date], [end_date]
signals:  date, one numeric column per signal name (optional, ``--signals``)
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.config import DataConfig
from forecast.errors import DataError

log = logging.getLogger(__name__)

SALES_REQUIRED = ("item_id", "date", "units")
PRODUCTS_REQUIRED = ("item_id", "description")
SHOW_ROWS = 5  # how many offending rows a message quotes
LIFE_CYCLE_DATES = ("launch_date", "end_date")  # optional product dates (forecast.data.panel)


@dataclass
class Tables:
    """Validated inputs: typed, sorted, one row per (item, date) in sales."""

    sales: pd.DataFrame  # item_id (str), date (datetime64), units (float), [price], [covariates]
    products: pd.DataFrame  # item_id (str), description (str), [attributes], [launch_date], [end_date]
    sales_name: str
    products_name: str

    @property
    def covariates(self) -> list[str]:
        return [c for c in self.sales.columns if c not in (*SALES_REQUIRED, "price")]


def load_tables(sales_path: str | Path, products_path: str | Path, config: DataConfig | None = None) -> Tables:
    """Read and validate both tables; raise DataError on the first broken rule."""
    config = config or DataConfig()
    sales = read_table(sales_path)
    products = read_table(products_path)
    name_s, name_p = Path(sales_path).name, Path(products_path).name
    sales = validate_sales(sales, name_s, config.negative_units)
    products = validate_products(products, name_p, config.max_description_chars)
    check_items_known(sales, products, name_s, name_p)
    return Tables(sales=sales, products=products, sales_name=name_s, products_name=name_p)


# --- reading ---------------------------------------------------------------
def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as strings-first, refusing what cannot be a table."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    else:
        frame = _read_csv(path)
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8 text (byte {err.start}, line {line}); "
            "save the file as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no header row") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: cannot parse as CSV ({err})") from None
    if frame.shape[1] == 1:
        header = frame.columns[0]
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if sep in header:
                raise DataError(
                    f"{path}: looks delimited by {name}, not commas (header {header!r}); "
                    "save it as comma-separated CSV"
                )
    return frame


# --- shared checks ------------------------------------------------------------
def _lines(mask: np.ndarray | pd.Series) -> list[int]:
    """File line numbers (header is line 1) of the rows where mask is true."""
    idx = np.flatnonzero(np.asarray(mask))
    return [int(i) + 2 for i in idx[:SHOW_ROWS]]


def _fail_rows(file: str, column: str, problem: str, mask, frame: pd.DataFrame) -> None:
    mask = np.asarray(mask)
    if not mask.any():
        return
    rows = np.flatnonzero(mask)[:SHOW_ROWS]
    examples = ", ".join(
        f"line {int(i) + 2}: {_describe_row(frame, int(i), column)}" for i in rows
    )
    raise DataError(f"{file}: column {column!r}: {int(mask.sum())} row(s) {problem} ({examples})")


def _describe_row(frame: pd.DataFrame, i: int, column: str) -> str:
    parts = []
    if "item_id" in frame.columns and column != "item_id":
        parts.append(f"item_id={frame['item_id'].iloc[i]!s}")
    parts.append(f"{column}={frame[column].iloc[i]!r}")
    return " ".join(parts)


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    present = list(frame.columns)
    missing = [c for c in required if c not in present]
    if not missing:
        return
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, present, n=1, cutoff=0.6)
        close = close or [p for p in present if p.lower() == col.lower()]
        hints.append(f"{col!r} (did you mean {close[0]!r}?)" if close else repr(col))
    raise DataError(
        f"{file}: missing required column(s) {', '.join(hints)}; found columns: {', '.join(present)}"
    )


def _clean_ids(frame: pd.DataFrame, file: str) -> pd.Series:
    ids = frame["item_id"].astype(str).str.strip()
    _fail_rows(file, "item_id", "are empty", ids.eq("") | frame["item_id"].isna(), frame)
    return ids


def parse_numeric(frame: pd.DataFrame, column: str, file: str, allow_missing: bool = False) -> pd.Series:
    """Numbers only: refuse text, and NaN/inf unless missing values are allowed."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype(float)
        text_bad = pd.Series(False, index=raw.index)
    else:
        text = raw.astype(str).str.strip()
        blank = text.eq("") | raw.isna()
        values = pd.to_numeric(text.where(~blank), errors="coerce")
        text_bad = values.isna() & ~blank & ~text.str.lower().isin(["nan", "inf", "-inf", "infinity"])
        _fail_rows(file, column, "are not numbers", text_bad, frame)
        values = values.where(~text.str.lower().isin(["inf", "infinity"]), np.inf)
        values = values.where(~text.str.lower().eq("-inf"), -np.inf)
    _fail_rows(file, column, "are infinite", np.isinf(values.to_numpy(dtype=float)), frame)
    if not allow_missing:
        _fail_rows(file, column, "are empty or NaN", values.isna(), frame)
    return values.astype(float)


def parse_dates(frame: pd.DataFrame, column: str, file: str, allow_missing: bool = False) -> pd.Series:
    """Dates in one consistent format; a mix of formats is refused, not guessed row by row."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw).dt.tz_localize(None) if getattr(raw.dt, "tz", None) else raw
    else:
        text = raw.astype(str).str.strip()
        blank = text.eq("") | raw.isna() | text.str.lower().isin(["nan", "nat", "none"])
        if not allow_missing:
            _fail_rows(file, column, "are empty", blank, frame)
        parsed = pd.to_datetime(text.where(~blank), errors="coerce", format="ISO8601")
        bad = parsed.isna() & ~blank
        if bad.any():
            # Not ISO: accept one other consistent format, inferred from the first value.
            fmt_parsed = pd.to_datetime(text.where(~blank), errors="coerce")
            fmt_bad = fmt_parsed.isna() & ~blank
            if fmt_bad.any() and not fmt_bad.all():
                _fail_rows(
                    file, column,
                    "are unparseable dates or use a different date format than the rest "
                    "(use one format, ideally YYYY-MM-DD)",
                    fmt_bad, frame,
                )
            _fail_rows(file, column, "are unparseable dates (use YYYY-MM-DD)", fmt_bad, frame)
            if (~parsed.isna()).any():
                _fail_rows(
                    file, column,
                    "mix date formats (some YYYY-MM-DD, some not); use one format",
                    bad, frame,
                )
            parsed = fmt_parsed
    return parsed.dt.normalize()


# --- the two tables -----------------------------------------------------------------
def validate_sales(frame: pd.DataFrame, file: str, negative_units: str = "error") -> pd.DataFrame:
    require_columns(frame, SALES_REQUIRED, file)
    out = pd.DataFrame({"item_id": _clean_ids(frame, file)})
    out["date"] = parse_dates(frame, "date", file)
    out["units"] = parse_numeric(frame, "units", file)
    negative = out["units"] < 0
    if negative_units == "zero" and negative.any():
        log.warning("%s: %d row(s) with negative units counted as zero sales", file, int(negative.sum()))
        out["units"] = out["units"].clip(lower=0)
    _fail_rows(
        file, "units",
        "are negative (net out returns, or pass --negative-units zero to count them as zero sales)",
        out["units"] < 0, frame,
    )
    if "price" in frame.columns:
        out["price"] = parse_numeric(frame, "price", file, allow_missing=True)
        _fail_rows(file, "price", "are negative", out["price"] < 0, frame)
    for column in frame.columns:
        if column in out.columns or column in SALES_REQUIRED:
            continue
        out[column] = parse_numeric(frame, column, file)
    dup = out.duplicated(["item_id", "date"], keep=False)
    _fail_rows(file, "date", "duplicate an (item_id, date) pair; aggregate them to one row", dup, frame)
    return out.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)


def validate_products(frame: pd.DataFrame, file: str, max_description_chars: int = 500) -> pd.DataFrame:
    require_columns(frame, PRODUCTS_REQUIRED, file)
    out = frame.copy()
    out["item_id"] = _clean_ids(frame, file)
    _fail_rows(file, "item_id", "repeat an item_id already listed", out["item_id"].duplicated(keep="first"), frame)
    desc = frame["description"].fillna("").astype(str).str.strip()
    _fail_rows(file, "description", "are empty (every product needs a text description)", desc.eq(""), frame)
    too_long = desc.str.len() > max_description_chars
    if too_long.any():
        log.warning(
            "%s: %d description(s) longer than %d characters were truncated (first at line %d)",
            file, int(too_long.sum()), max_description_chars, _lines(too_long)[0],
        )
        desc = desc.str.slice(0, max_description_chars)
    out["description"] = desc
    for column in LIFE_CYCLE_DATES:
        if column in frame.columns:
            out[column] = parse_dates(frame, column, file, allow_missing=True)
    return out.reset_index(drop=True)


def load_signals(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read and validate a signals table: ``date`` plus one numeric column per signal name.

    Returns the table (dates parsed, one row per date, sorted) and the file name for messages.
    """
    frame = read_table(path)
    file = Path(path).name
    require_columns(frame, ("date",), file)
    names = [c for c in frame.columns if c != "date"]
    if not names:
        raise DataError(f"{file}: no signal columns besides 'date' (one numeric column per signal name)")
    out = pd.DataFrame({"date": parse_dates(frame, "date", file)})
    for name in names:
        out[name] = parse_numeric(frame, name, file)
    _fail_rows(file, "date", "repeat a date already listed", out["date"].duplicated(keep="first"), frame)
    return out.sort_values("date", kind="stable").reset_index(drop=True), file


def check_items_known(sales: pd.DataFrame, products: pd.DataFrame, sales_file: str, products_file: str) -> None:
    unknown = ~sales["item_id"].isin(set(products["item_id"]))
    if unknown.any():
        ids = pd.unique(sales.loc[unknown, "item_id"])
        shown = ", ".join(map(str, ids[:SHOW_ROWS]))
        raise DataError(
            f"{sales_file}: column 'item_id': {len(ids)} item(s) have sales but are not in {products_file} "
            f"({shown}{', ...' if len(ids) > SHOW_ROWS else ''}); add them to {products_file}"
        )
