"""The data contract: read the sales and products tables and validate them up front.

Every check runs before any model is fitted, and every failure is a
:class:`~forecast.core.errors.DataError` that names the file, the column and the first
offending rows (as line numbers in the file, header = line 1), so a planner can
open the file and fix it.

sales:    item_id, date, units, [price], [covariates: declared, or a recognised name]
products: item_id, description, [attribute columns], [launch_date], [end_date], [price]
signals:  date, one numeric column per signal name (optional, ``--signals``)

Nothing is guessed: dates are ISO 8601, or read with ``--date-format``, or in the one
format that reads every value of the column the same way (day-first and month-first
readings that disagree are refused). An extra sales column is a covariate only when
it is declared (``--covariates``) or has a recognised name; any other is ignored
with a warning.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import io
import logging
import lzma
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from forecast.core.config import DataConfig
from forecast.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SALES_REQUIRED = ("item_id", "date", "units")
PRODUCTS_REQUIRED = ("item_id", "description")
SHOW_ROWS = 5  # how many offending rows a message quotes
LIFE_CYCLE_DATES = ("launch_date", "end_date")  # optional product dates (forecast.data.panel)
# Sales columns taken as covariates without being declared (case-insensitive; spaces and hyphens as "_").
KNOWN_COVARIATES = ("promo", "promotion", "promotions", "on_promo", "on_promotion", "discount", "holiday",
                    "holidays", "event", "events")
UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column without a header
MAX_VALUE = 1e15  # |number| above this is no quantity, price or covariate (and would overflow sums and float32)
OUTLIER_FACTOR = 1000  # units this many times their product's median sale are named in a WARNING
FAR_DAYS = 3653  # a date further than max(this, 20 x the median distance) from the sales dates' median is refused
CONTROL = r"[\x00-\x1f\x7f-\x9f]"  # control characters (NUL, ...) refused in ids


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
    return validate_tables(read_table(sales_path), read_table(products_path),
                           Path(sales_path).name, Path(products_path).name, config)


def validate_tables(sales: pd.DataFrame, products: pd.DataFrame, sales_name: str, products_name: str,
                    config: DataConfig | None = None) -> Tables:
    """Validate two tables already in memory (read from files, or DataFrames given to the Python
    API) by the same rules; errors name the tables by ``sales_name`` and ``products_name``."""
    config = config or DataConfig()
    sales = validate_sales(sales, sales_name, config.negative_units, config.covariates, config.date_format)
    products = validate_products(products, products_name, config.max_description_chars, config.date_format)
    for column in LIFE_CYCLE_DATES:
        if column in products:
            shown = products.assign(**{column: products[column].dt.strftime("%Y-%m-%d")})
            refuse_far_dates(products[column], sales["date"], shown, column, products_name)
    check_items_known(sales, products, sales_name, products_name)
    return Tables(sales=sales, products=products, sales_name=sales_name, products_name=products_name)


# --- reading ---------------------------------------------------------------
def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as strings-first, refusing what cannot be a table.

    The content decides, not the name: Parquet is read as Parquet whatever its suffix, gzip,
    bzip2 and xz are decompressed (``sales.csv.gz``), a pipe or FIFO (``--sales /dev/stdin``)
    is read once (:func:`file_bytes`), and a file that is no table (an Excel workbook, a
    ZIP, UTF-16 text) is named for what it is.
    """
    path = Path(path)
    raw = file_bytes(path)
    raw, kind = _unpacked(raw, path)
    if kind == "parquet":
        if path.suffix.lower() not in (".parquet", ".pq"):
            log.warning("%s: read as Parquet (that is what the file holds, whatever its name says)", path.name)
        try:
            frame = pd.read_parquet(io.BytesIO(raw))
        except Exception as err:  # pyarrow raises many types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    else:
        if path.suffix.lower() in (".parquet", ".pq"):
            log.warning("%s: not Parquet (no Parquet header): read as CSV text", path.name)
        frame = _read_csv(raw, path)
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return _drop_empty_unnamed(frame, path.name)


_STREAMS: dict[str, bytes] = {}  # a pipe's content, read once: later readers (the resume hash) get the same


def file_bytes(path: str | Path) -> bytes:
    """The bytes of an input file; a pipe, FIFO or character device is read to its end once and
    remembered, so every later reader of the same path sees the same data."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.is_file():
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty")
        return path.read_bytes()
    key = os.path.realpath(path)
    if key not in _STREAMS:
        with open(path, "rb") as stream:
            _STREAMS[key] = stream.read()
    if not _STREAMS[key]:
        raise DataError(f"{path}: is a pipe or device that gave no data (nothing was piped into it?)")
    return _STREAMS[key]


# Leading bytes of formats that are not a table this package reads: the file is named for what it is.
NOT_TABLES = ((b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?); unzip it, or save the sheet as CSV UTF-8"),
              (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls); save the sheet as CSV UTF-8"),
              (b"SQLite format 3\x00", "an SQLite database; export the table as CSV"),
              (b"%PDF", "a PDF document, not a table"),
              (b"\xff\xfe", "UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8')"),
              (b"\xfe\xff", "UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8')"))
COMPRESSED = ((b"\x1f\x8b", "gzip", gzip.decompress), (b"BZh", "bzip2", bz2.decompress),
              (b"\xfd7zXZ\x00", "xz", lzma.decompress))


def _unpacked(raw: bytes, path: Path) -> tuple[bytes, str]:
    """(content, "parquet" or "text"): a compressed file decompressed, anything else no table refused."""
    for magic, name, decompress in COMPRESSED:
        if raw.startswith(magic):
            try:
                raw = decompress(raw)
            except Exception as err:  # each library raises its own type for a truncated file
                raise DataError(f"{path}: a {name}-compressed file that cannot be decompressed ({err})") from None
            log.info("%s: %s-compressed, decompressed to %d bytes", path.name, name, len(raw))
            if not raw:
                raise DataError(f"{path}: file is empty (after {name} decompression)")
            break
    if raw.startswith(b"PAR1"):
        return raw, "parquet"
    for magic, what in NOT_TABLES:
        if raw.startswith(magic):
            raise DataError(f"{path}: is {what}")
    return raw, "text"


def input_paths(config: DataConfig) -> list[str]:
    """The files a run reads: an output path must never be one of them."""
    return [p for p in (config.sales, config.products, config.signals) if p]


def _drop_empty_unnamed(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """Drop header-less columns with no values (a trailing comma on every row), saying so."""
    empty = [c for c in frame.columns if UNNAMED.fullmatch(c) and _blank(frame[c]).all()]
    if empty:
        log.warning("%s: ignored %d empty column(s) without a header (a trailing comma on every row?)",
                    file, len(empty))
    return frame.drop(columns=empty)


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


def _read_csv(raw: bytes, path: Path) -> pd.DataFrame:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8 text (byte {err.start}, line {line}); "
            "save the file as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None
    if b"\r" in raw and b"\n" not in raw:  # classic Mac OS line endings: CR alone ends a line
        log.info("%s: lines end in CR alone (classic Mac OS); read as such", path.name)
        raw = raw.replace(b"\r", b"\n")
    read = lambda **kw: pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False,  # noqa: E731
                                    encoding="utf-8-sig", **kw)
    try:
        frame = read()
        if not isinstance(frame.index, pd.RangeIndex):  # every row has one field more than the header
            _refuse_extra_fields(frame, path)
            log.warning("%s: ignored an empty last field on every row (a trailing comma?)", path.name)
            frame = read(index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no header row") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: cannot parse as CSV ({err})") from None
    _refuse_duplicate_headers(raw[:1 << 16].decode("utf-8-sig", errors="ignore"), path)
    if frame.shape[1] == 1:
        header = frame.columns[0]
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if sep in header:
                raise DataError(
                    f"{path}: looks delimited by {name}, not commas (header {header!r}); "
                    "save it as comma-separated CSV"
                )
    return frame


def _refuse_extra_fields(frame: pd.DataFrame, path: Path) -> None:
    """pandas took the first field as an index because rows are one field longer than the header:
    only an empty extra field (a trailing comma) may be dropped."""
    extra = ~_blank(frame.iloc[:, -1]).to_numpy()
    if extra.any():
        shown = ", ".join(f"line {int(i) + 2}" for i in np.flatnonzero(extra)[:SHOW_ROWS])
        raise DataError(f"{path}: {int(extra.sum())} row(s) have more fields than the header ({shown}); "
                        "add the missing column name to the header")


def _refuse_duplicate_headers(text: str, path: Path) -> None:
    """A header named twice (pandas would read the second as 'units.1'), also differing in case only."""
    try:
        header = [name.strip() for name in next(csv.reader(io.StringIO(text.replace("\0", ""))), [])]
    except csv.Error:  # a header line pandas read but the csv module will not: nothing more to check
        return
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            continue
        if name.lower() in seen:
            first = seen[name.lower()]
            raise DataError(
                f"{path}: column {name!r}: the header names it twice (columns {first} and {position}"
                f"{'' if header[first - 1] == name else ', as ' + repr(header[first - 1])}); keep one"
            )
        seen[name.lower()] = position


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
        parts.append(f"item_id={visible(frame['item_id'].iloc[i])}")
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


def visible(text: object) -> str:
    """``text`` for a message, its invisible characters escaped (a zero-width space as \\u200b, NUL as
    \\x00): two ids that print alike must not look alike in an error."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def _clean_ids(frame: pd.DataFrame, file: str) -> pd.Series:
    """Ids as text, stripped and in Unicode NFC (an é typed as e + accent equals the one-character é);
    whole-number ids stored as numbers (Parquet) become their digits; control characters are refused."""
    raw = frame["item_id"]
    kind = _stored_as(raw)
    if kind in ("true/false values", "dates", "durations") or (kind == "numbers" and not _whole(raw)):
        raise DataError(f"{file}: column 'item_id' is stored as {kind} ({raw.dtype}); ids must be text "
                        "(or whole numbers)")
    if kind == "numbers":
        raw = raw.astype("Int64")
    ids = raw.astype(str).str.strip().str.normalize("NFC")
    _fail_rows(file, "item_id", "are empty", ids.eq("") | raw.isna(), frame)
    _fail_rows(file, "item_id", "hold control characters (shown escaped: \\x00 is a NUL byte; binary data or a "
               "broken export?)", ids.str.contains(CONTROL), frame)
    return ids


def _stored_as(values: pd.Series) -> str | None:
    """What a typed column (Parquet) holds, in words; None for text (every CSV column)."""
    kinds = ((pd.api.types.is_bool_dtype, "true/false values"), (pd.api.types.is_datetime64_any_dtype, "dates"),
             (pd.api.types.is_timedelta64_dtype, "durations"), (pd.api.types.is_numeric_dtype, "numbers"))
    return next((name for test, name in kinds if test(values)), None)


def _whole(values: pd.Series) -> bool:
    finite = values.dropna().to_numpy(dtype=float)
    return bool(np.all(np.isfinite(finite) & (finite == np.round(finite))))


def _refuse_stored_as(values: pd.Series, column: str, file: str, wanted: str, refused: tuple[str, ...]) -> None:
    """A typed column whose type cannot mean what the contract says (boolean units, numeric descriptions)."""
    kind = _stored_as(values)
    if kind in refused:
        raise DataError(f"{file}: column {column!r} is stored as {kind} ({values.dtype}); it must hold {wanted}")


def parse_numeric(frame: pd.DataFrame, column: str, file: str, allow_missing: bool = False) -> pd.Series:
    """Numbers only: refuse text, true/false and dates, values beyond MAX_VALUE, and NaN/inf unless
    missing values are allowed."""
    raw = frame[column]
    _refuse_stored_as(raw, column, file, "numbers", ("true/false values", "dates", "durations"))
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
    _fail_rows(file, column, f"are beyond ±{MAX_VALUE:g}, no plausible quantity (a unit or parsing error?)",
               np.abs(values.to_numpy(dtype=float)) > MAX_VALUE, frame)
    if not allow_missing:
        _fail_rows(file, column, "are empty or NaN", values.isna(), frame)
    return values.astype(float)


def parse_dates(frame: pd.DataFrame, column: str, file: str, allow_missing: bool = False,
                date_format: str | None = None) -> pd.Series:
    """Dates read one way for the whole column, never guessed row by row.

    ISO 8601 is always accepted; ``date_format`` (``--date-format``) reads any other
    column. Without it, a column that is not ISO must have exactly one reading among
    the usual formats (``01/02/24`` has two: refused; a ``13/02/24`` in the column
    proves day-first). Time-zone offsets must be the same on every row (they are dropped:
    dates are local).
    """
    raw = frame[column]
    if not raw.isna().all():  # an optional date column left empty may be stored as float NaN
        _refuse_stored_as(raw, column, file, "dates (YYYY-MM-DD)", ("true/false values", "numbers", "durations"))
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_localize(None) if raw.dt.tz is not None else raw
        return parsed.dt.normalize()
    text = raw.astype(str).str.strip()
    blank = text.eq("") | raw.isna() | text.str.lower().isin(["nan", "nat", "none"])
    if not allow_missing:
        _fail_rows(file, column, "are empty", blank, frame)
    values = text.where(~blank)
    parsed = _read_one_way(values, frame, column, file, date_format)
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize()


def _read_one_way(values: pd.Series, frame: pd.DataFrame, column: str, file: str, given: str | None) -> pd.Series:
    """The column read with the one format that reads every value (see parse_dates), or a DataError."""
    unique = pd.Series(values.dropna().unique(), dtype=object)
    if given and _reads_all(unique, given):
        return _read_dates(values, given, frame, column, file)
    iso = _read_dates(values, "ISO8601", frame, column, file)
    iso_bad = values.notna() & iso.isna()
    if not iso_bad.any():
        return iso
    if given:
        off = values.notna() & _read_dates(values, given, frame, column, file).isna()
        _fail_rows(file, column, f"match neither --date-format {given!r} nor YYYY-MM-DD", off & iso_bad, frame)
        _fail_rows(file, column, f"are YYYY-MM-DD while the rest match --date-format {given!r}; use one format",
                   off, frame)
    if iso_bad.sum() < values.notna().sum():
        _fail_rows(file, column, "are unparseable dates or use a different date format than the rest "
                   "(use one format, ideally YYYY-MM-DD)", iso_bad, frame)
    readings = {fmt: parsed for fmt in _candidate_formats(unique)
                if (parsed := _to_datetime(unique, fmt)).notna().all()}
    if not readings:
        _fail_rows(file, column, "are unparseable dates or mix date formats (use one format, ideally "
                   "YYYY-MM-DD, or give it with --date-format)", values.notna(), frame)
    distinct = {tuple(parsed): fmt for fmt, parsed in readings.items()}
    if len(distinct) > 1:
        differ = pd.DataFrame(dict(enumerate(readings.values()))).nunique(axis=1).gt(1)
        ambiguous = set(unique[differ.to_numpy()])
        _fail_rows(file, column, f"are ambiguous dates, read differently as {' or '.join(distinct.values())}; "
                   f"give the format with --date-format (e.g. --date-format {next(iter(distinct.values()))})",
                   values.isin(ambiguous), frame)
    return _read_dates(values, next(iter(readings)), frame, column, file)


def _candidate_formats(unique: pd.Series) -> list[str]:
    """Day-first and month-first numeric dates with the usual separators, year-first with a
    four-digit year, plus pandas' guesses for a sample of the values with day and month swapped."""
    numeric = [f"{a}{sep}{b}{sep}{c}" for sep in "/-. " for a, b, c in
               (("%d", "%m", "%Y"), ("%m", "%d", "%Y"), ("%d", "%m", "%y"), ("%m", "%d", "%y"), ("%Y", "%m", "%d"))]
    with warnings.catch_warnings():  # pandas warns when a guess contradicts dayfirst
        warnings.simplefilter("ignore")
        guessed = {guess_datetime_format(v, dayfirst=first) for v in unique[:20] for first in (False, True)} - {None}
    swapped = {g.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m") for g in guessed if "%d" in g and "%m" in g}
    candidates = dict.fromkeys([*numeric, *sorted(guessed), *sorted(swapped)])
    return [f for f in candidates if not re.match(r"%[Yy]\W%d|%y", f)]


def _reads_all(unique: pd.Series, fmt: str) -> bool:
    try:
        return bool(_to_datetime(unique, fmt).notna().all())
    except ValueError:  # mixed time zones: reported by _read_dates
        return False


def _to_datetime(values: pd.Series, fmt: str) -> pd.Series:
    try:
        return pd.to_datetime(values, format=fmt, errors="coerce")
    except ValueError as err:  # a bad directive; mixed time zones are handled by _read_dates
        if "Mixed timezones" in str(err):
            raise
        raise ConfigError(f"--date-format {fmt!r}: {err} (see the codes of Python's strftime, e.g. %d/%m/%y)") from None


def _read_dates(values: pd.Series, fmt: str, frame: pd.DataFrame, column: str, file: str) -> pd.Series:
    """Parse with ``fmt``; dates with different time-zone offsets are refused by line."""
    try:
        return _to_datetime(values, fmt)
    except ValueError:
        offsets = values.str.extract(r"(Z|[+-]\d\d:?\d\d)$", expand=False).where(values.notna()).fillna("none")
        usual = offsets[values.notna()].mode().iloc[0]
        _fail_rows(file, column, f"mix time-zone offsets ({', '.join(sorted(offsets[values.notna()].unique()))}); "
                   "give local dates without an offset, or one offset for the whole file",
                   values.notna() & offsets.ne(usual), frame)
        raise


# --- the two tables -----------------------------------------------------------------
def validate_sales(frame: pd.DataFrame, file: str, negative_units: str = "error",
                   covariates: list[str] | tuple[str, ...] = (), date_format: str | None = None) -> pd.DataFrame:
    require_columns(frame, SALES_REQUIRED, file)
    out = pd.DataFrame({"item_id": _clean_ids(frame, file)})
    out["date"] = parse_dates(frame, "date", file, date_format=date_format)
    refuse_far_dates(out["date"], out["date"], frame, "date", file)
    out["units"] = parse_numeric(frame, "units", file)
    warn_outlying_units(out, frame, file)
    negative = out["units"] < 0
    if negative_units == "zero" and negative.any():
        log.warning("%s: %d row(s) with negative units counted as zero sales", file, int(negative.sum()))
        out["units"] = out["units"].clip(lower=0)
    _fail_rows(
        file, "units",
        "are negative (net out returns, or pass --negative-units zero to count them as zero sales)",
        out["units"] < 0, frame,
    )
    price, used = _sales_extra_columns(frame, file, covariates)
    if price:
        out["price"] = _parse_price(frame, price, file)
    for column in used:
        out[column] = parse_numeric(frame, column, file)
    dup = out.duplicated(["item_id", "date"], keep=False)
    _fail_rows(file, "date", "duplicate an (item_id, date) pair; aggregate them to one row", dup, frame)
    return out.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)


def refuse_far_dates(dates: pd.Series, reference: pd.Series, frame: pd.DataFrame, column: str, file: str) -> None:
    """Refuse dates far outside the bulk of the ``reference`` (the sales dates): one typo such as
    2204-02-29 for 2024-02-29 would stretch the calendar over centuries. Far: more than
    max(FAR_DAYS, 20 x the median distance to the median) from the reference's median."""
    days = reference.dropna().to_numpy(dtype="datetime64[D]").astype(np.int64)
    if days.size == 0:
        return
    middle = np.median(days)
    limit = max(FAR_DAYS, 20 * float(np.median(np.abs(days - middle))))
    far = (np.abs(dates.to_numpy(dtype="datetime64[D]").astype(np.int64) - middle) > limit) & dates.notna().to_numpy()
    if far.any():
        near = days[np.abs(days - middle) <= limit]
        lo, hi = np.datetime64(int(near.min()), "D"), np.datetime64(int(near.max()), "D")
        _fail_rows(file, column, f"lie far outside the other sales dates ({lo} to {hi}): a typo in the year?",
                   far, frame)


def warn_outlying_units(sales: pd.DataFrame, frame: pd.DataFrame, file: str) -> None:
    """Name at WARNING the rows whose units are over OUTLIER_FACTOR times their product's median sale
    (a 1e12 typed for 12): they are kept, since a real spike is possible, but said."""
    positive = sales["units"].where(sales["units"] > 0)
    typical = sales["item_id"].map(positive.groupby(sales["item_id"]).quantile(0.5, interpolation="lower"))
    outlying = (sales["units"] > OUTLIER_FACTOR * typical.clip(lower=1)).to_numpy()
    if outlying.any():
        rows = np.flatnonzero(outlying)[:SHOW_ROWS]
        shown = ", ".join(f"line {i + 2}: {_describe_row(frame, int(i), 'units')} (its median {typical.iloc[i]:g})"
                          for i in rows)
        log.warning("%s: column 'units': %d row(s) are over %d times their product's median sale, a typo or a unit "
                    "error? (%s); they are used as they are", file, int(outlying.sum()), OUTLIER_FACTOR, shown)


def _parse_price(frame: pd.DataFrame, column: str, file: str) -> pd.Series:
    """Prices: numbers >= 0, blanks allowed (sales: carried forward; products: no plan)."""
    price = parse_numeric(frame, column, file, allow_missing=True)
    _fail_rows(file, column, "are negative", price < 0, frame)
    return price


def _sales_extra_columns(frame: pd.DataFrame, file: str, declared) -> tuple[str | None, list[str]]:
    """(the price column, the covariate columns) beyond item_id/date/units.

    A column is the price when its name is ``price`` in any case, a covariate when it is
    declared (``--covariates``) or has a recognised name (KNOWN_COVARIATES, any case);
    every other column is ignored with a warning rather than fed to a model unasked.
    """
    by_lower = {c.lower(): c for c in frame.columns}
    unknown = [name for name in declared if name.lower() not in by_lower]
    if unknown:
        raise DataError(f"{file}: covariate(s) {', '.join(map(repr, unknown))} (--covariates, data.covariates) "
                        f"are not columns; found columns: {', '.join(frame.columns)}")
    chosen = {by_lower[name.lower()] for name in declared}
    price = by_lower.get("price")
    covariates, ignored = [], []
    for column in frame.columns:
        if column in SALES_REQUIRED or column == price:
            continue
        recognised = re.sub(r"[\s-]+", "_", column.lower()) in KNOWN_COVARIATES
        (covariates if column in chosen or recognised else ignored).append(column)
    if ignored:
        log.warning("%s: ignored column(s) %s: not a recognised covariate (declare one with --covariates NAME)",
                    file, ", ".join(map(repr, ignored)))
    return price, covariates


def validate_products(frame: pd.DataFrame, file: str, max_description_chars: int = 500,
                      date_format: str | None = None) -> pd.DataFrame:
    require_columns(frame, PRODUCTS_REQUIRED, file)
    index_like = [c for c in frame.columns if UNNAMED.fullmatch(c)]
    if index_like:
        log.warning("%s: ignored column(s) without a header %s (a saved index?)", file, ", ".join(map(repr, index_like)))
    out = frame.drop(columns=index_like)
    out["item_id"] = _clean_ids(frame, file)
    _fail_rows(file, "item_id", "repeat an item_id already listed", out["item_id"].duplicated(keep="first"), frame)
    _refuse_stored_as(frame["description"], "description", file, "text",
                      ("true/false values", "numbers", "dates", "durations"))
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
            out[column] = parse_dates(frame, column, file, allow_missing=True, date_format=date_format)
    price = next((c for c in frame.columns if c.lower() == "price"), None)
    if price:
        out = out.drop(columns=price).assign(price=_parse_price(frame, price, file))
    return out.reset_index(drop=True)


def load_signals(path: str | Path, date_format: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read and validate a signals table: ``date`` plus one numeric column per signal name.

    Returns the table (dates parsed, one row per date, sorted) and the file name for messages.
    """
    frame = read_table(path)
    file = Path(path).name
    require_columns(frame, ("date",), file)
    names = [c for c in frame.columns if c != "date"]
    if not names:
        raise DataError(f"{file}: no signal columns besides 'date' (one numeric column per signal name)")
    out = pd.DataFrame({"date": parse_dates(frame, "date", file, date_format=date_format)})
    for name in names:
        out[name] = parse_numeric(frame, name, file)
    _fail_rows(file, "date", "repeat a date already listed", out["date"].duplicated(keep="first"), frame)
    return out.sort_values("date", kind="stable").reset_index(drop=True), file


def check_items_known(sales: pd.DataFrame, products: pd.DataFrame, sales_file: str, products_file: str) -> None:
    unknown = ~sales["item_id"].isin(set(products["item_id"]))
    if unknown.any():
        ids = pd.unique(sales.loc[unknown, "item_id"])
        shown = ", ".join(map(visible, ids[:SHOW_ROWS]))
        raise DataError(
            f"{sales_file}: column 'item_id': {len(ids)} item(s) have sales but are not in {products_file} "
            f"({shown}{', ...' if len(ids) > SHOW_ROWS else ''}); add them to {products_file}"
        )
