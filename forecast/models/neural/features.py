"""Training windows, features and scaling for the neural forecasters (a LightningDataModule).

Everything the network reads is prepared here, once, as dense numpy arrays on a
padded time grid, then as tensors (:class:`WindowTables`, one copy per device);
a batch is a gather by index from them (no pandas, no tokenizer and no Python
loop per window in the training hot path). With ``train.num_workers: 0`` (the
default) the DataLoader yields only each batch's (items, origins) and
:meth:`PanelDataModule.on_after_batch_transfer` gathers the windows on the
training device, so a GPU assembles its own batches; with workers, they gather
on the CPU. Profile and timings: experiments/results/throughput.md.

Windows
    One window per (item, origin): the origin ``t`` is the first forecast period;
    the context is the ``L`` periods before it (``L = neural.context_length``),
    left-padded where the item had not started yet, with an ``observed`` channel
    saying which steps are real; the targets are the ``H`` periods from ``t``.
    For each item there is a window at every origin from its start on, so the
    first one of every item is a *launch window* with an empty context: that is
    how the model learns to forecast a new product from its description alone.
    Targets are masked (NaN) where nothing was observed.

Validation
    Default (``train.val_periods = 0``): no holdout. Every window whose origin
    lies before the panel's end trains (targets masked at the end), for a fixed
    number of epochs of ``train.windows_per_epoch`` random windows each, under a
    one-cycle learning rate. On online_retail (41 weeks; backtest cut-offs at 21,
    25 and 29) a horizon-long holdout left the model training only on targets
    before week 9, 13 or 17: pooled history WAPE 0.876 -> 0.781 without it, 0.745
    with the one-cycle schedule. With ``V = train.val_periods > 0`` (``None``: the
    horizon) the last ``V`` periods are held out for early stopping on
    ``val/loss``: each item has one validation window at origin
    ``max(start, T - V)`` (what the backtest asks: items with history forecast
    from the cut-off, new items from their launch). Training windows then have
    origins before ``T - V`` and targets masked from ``T - V`` on, so no training
    target lies in the validation periods (the trend target of training windows
    is likewise computed on the series cut at ``T - V``).

Scaling (why global, not per series)
    A new product has no history, so a per-series mean scale cannot give its
    level: the text must set the *absolute* level. Units are therefore mapped by
    one global transform ``z = (f(units) - m) / s`` with ``m, s`` the mean and
    standard deviation of ``f(units)`` over all observed training cells; the
    network predicts ``z`` and outputs are inverted with ``f⁻¹(z * s + m)``,
    clipped at 0. ``f`` is ``neural.transform``: ``sqrt`` (default), ``log1p`` or
    ``none``. The compression matters because the heads are trained under MSE in
    this space: ``log1p`` makes the forecast a geometric mean, far below the mean
    of intermittent, heavy-tailed retail series (on online_retail: pooled WAPE
    0.93, bias -0.89 at one origin); ``none`` lets a few best sellers dominate the
    loss (WAPE 0.89); ``sqrt`` sits between (WAPE 0.76). Prices use
    ``log(price)`` standardised the same way; further covariates are
    standardised (mean/std over known cells). The statistics are fitted on the
    training periods only and saved with the model.

    ``neural.scaling = "window"`` (DeepAR-style, opt-in): each window's values are
    divided by its level ``1 + mean f(units)`` over its observed context; a
    launch window (empty context) gets the global launch level (1 + mean ``f`` of
    the first H periods of every item), so its absolute level still comes from the
    text. ``log(level)`` replaces the context-mean static feature and outputs are
    ``f⁻¹(z * level)``. Window losses are weighted by
    ``(level / launch level) ** neural.level_weight``. On online_retail it gave a
    better MASE (1.35-1.42 vs 1.47) but a worse pooled WAPE (0.77-0.86 vs 0.745)
    than the global transform, which stays the default.

Features (named blocks: a batch holds ``context``, ``future`` and ``static``, each a dict
of block name -> tensor; the network sizes its layers from :attr:`PanelFeatures.widths`,
so a new block is one more entry in :data:`forecast.models.neural.blocks.BLOCKS`)
    context, per step: ``units`` (z, 0 where padded), ``observed``, ``calendar``
    (sin/cos of week of year and of month), ``age`` (``log1p(periods since
    start)/log(53)``), ``price`` (standardised log price, log price relative to the
    price plan, known flag), ``covariates`` (standardised, known flag folded in as 0).
    future, per horizon step: ``calendar``, ``age``, ``price_plan`` (standardised log
    and its known flag), ``covariates`` held at their last known value.
    static: ``age`` at the origin, ``sales`` (share of the context observed, mean and
    last-4 mean of observed context z; the text-only model does not read it: its table entry
    says it reads the sales history),
    ``price_plan`` and its known flag.
    The price plan of a window is the price at ``t - 1`` carried flat (or, for a
    launch, the ``price`` column of the products table): exactly
    :func:`forecast.models.base.carried_price` at prediction time, so training and
    forecasting see the same kind of plan.

Optional blocks (figures: experiments/results/ablations.md of the accuracy study)
    ``neural.age_curve``: future block ``age_curve``, the training items' mean scaled
    units at each step's age since start (the typical launch curve; ages past
    ``MAX_AGE`` take the last value; stored in the Scaler). ``neural.knn_feature = k``
    (text models): future block ``neighbours``, the mean launch curve (first H
    periods, scaled) of the k products most similar by description embedding, the
    product itself excluded (:func:`forecast.models.retrieval.neighbour_mean`, the ``knn`` baseline's
    retrieval). These retrieval blocks (and ``attribute_curves``, ``recent_launches``) are
    computed from a :class:`Reference`, the training panel's products, which a saved model keeps:
    at prediction time a product's features depend on its own rows and the model, not on the
    other products passed with it.

Windows without targets
    No training window lacks an observed target: :func:`training_windows` starts
    origins only inside an item's series and before the cut-off, and the series has
    no unknown cell there (zeros fill its gaps, NaN only lies after its end), so a
    series that ends (VISUELLE's 12 weeks) adds no windows that carry no loss.

Signals (``--signals`` with ``neural.signals: true``, :mod:`forecast.data.signals`)
    Context block ``signals``: per step, each signal's value (0 where the product
    does not use it or it has no value) and a flag saying the product has a known
    signal value then; static block ``signals``: per signal, its mean over the whole
    context and over its last 4 steps, and the share of steps with a known value
    (the text-only model reads no context, so this is how it sees the signals). The
    values come from :func:`forecast.data.signals.signal_windows`, which only returns
    values dated before the window's origin (a new product's: its launch); they are
    standardised per signal with statistics over the training periods, stored in
    the Scaler so prediction reproduces them. A model trained without signals
    ignores them; one trained with them refuses data without them.

Trend target
    The seasonal trend of period ``p`` is the centred moving average of units over
    ``neural.trend_window`` (``w``) periods, ``mean(units[p - w//2 : p + w//2 + 1])``
    over the observed cells only (the window shrinks at the series' ends), as in
    :func:`forecast.data.smoothing.centred_moving_average`; it is scaled like units.

Text
    ``frozen``: one embedding per product, computed once by
    :func:`forecast.models.encoders.text.embed_texts` (memoised); ``last-k``/``full``:
    each description tokenised once to fixed-length ids. A batch carries the
    embeddings (or ids) of its *unique* products and an index per window, so the
    encoder runs once per product per batch, not once per window.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from forecast.core.config import RunConfig
from forecast.data.panel import Panel, attribute_columns
from forecast.data.signals import Signals, signal_windows
from forecast.data.smoothing import centred_moving_average
from forecast.core.errors import ForecastError
from forecast.models.neural.blocks import PARTS, Window, at_age, blocks_on
from forecast.models.retrieval import ATTRIBUTE_PRIOR, mean_launch_curve, neighbour_mean

log = logging.getLogger(__name__)

AGE_SCALE = float(np.log(53.0))


# --- scaling -----------------------------------------------------------------
@dataclass
class Scaler:
    """Global statistics of the transformed series (see module docstring)."""

    transform: str = "sqrt"  # see TRANSFORMS and the module docstring
    units_mean: float = 0.0
    units_std: float = 1.0
    price_mean: float = 0.0
    price_std: float = 1.0
    covariates: dict[str, list[float]] = field(default_factory=dict)  # name -> [mean, std]
    scaling: str = "global"  # "global" or "window" (see the module docstring)
    launch_level: float = 1.0  # "window": the level of a launch window (empty context)
    age_curve: list[float] = field(default_factory=list)  # mean z by age since start (neural.age_curve)
    signals: dict[str, list[float]] = field(default_factory=dict)  # signal name -> [mean, std] (training periods)
    attributes: list[str] = field(default_factory=list)  # attribute columns of neural.attribute_curves

    @classmethod
    def fit(cls, panel: Panel, end: int, transform: str, scaling: str, launch_periods: int,
            signals: bool = False) -> "Scaler":
        """Statistics over the observed cells before period ``end``; ``transform`` and ``scaling``
        are the config's neural.transform and neural.scaling, ``launch_periods`` the horizon, ``signals``
        neural.signals (off: no signal statistics, so the network has no signal blocks)."""
        fu = TRANSFORMS[transform][0](panel.units[:, :end])
        m_u, s_u = _moments(fu)
        m_p, s_p = (0.0, 1.0) if panel.price is None else _moments(_safe_log(panel.price[:, :end]))
        covs = {k: list(_moments(v[:, :end])) for k, v in panel.covariates.items()}
        age = np.arange(fu.shape[1])[None, :] - panel.start[:, None]
        launch = fu[(age >= 0) & (age < launch_periods) & np.isfinite(fu)]
        level = 1.0 + (float(launch.mean()) if launch.size else 0.0)
        return cls(transform, m_u, s_u, m_p, s_p, covs, scaling, level, mean_age_curve((fu - m_u) / s_u, panel.start),
                   signal_moments(panel.signals if signals else None, end), attribute_columns(panel.products))

    def f(self, units: np.ndarray) -> np.ndarray:
        return TRANSFORMS[self.transform][0](units)

    def units_to_z(self, units: np.ndarray) -> np.ndarray:
        """Global scaling only: the standardised transform."""
        return (TRANSFORMS[self.transform][0](units) - self.units_mean) / self.units_std

    def z_to_units(self, z: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
        """Invert the scaling; ``level`` [n] is each window's level when ``scaling == "window"``."""
        if self.scaling == "window":
            v = z * np.asarray(level, dtype=float).reshape(-1, *([1] * (z.ndim - 1)))
        else:
            v = z * self.units_std + self.units_mean
        return np.clip(TRANSFORMS[self.transform][1](v), 0, None)

    def logprice_to_z(self, logp: np.ndarray) -> np.ndarray:
        return (logp - self.price_mean) / self.price_std

    def z_to_price(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.exp(z * self.price_std + self.price_mean), 0, None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Scaler":
        return cls(**data)


MAX_AGE = 53  # ages (periods since start) of the mean age curve; older ages use its last value


def mean_age_curve(z: np.ndarray, start: np.ndarray) -> list[float]:
    """[MAX_AGE]: the mean launch curve of ``z`` (knn.mean_launch_curve, the ``launch_curve`` model's
    definition, on the scaled scale) by age since ``start``; an age no item reached carries the last mean."""
    curve, last = [], 0.0
    for mean in mean_launch_curve(launch_curves(z, start, MAX_AGE)[1]):
        last = float(mean) if np.isfinite(mean) else last
        curve.append(last)
    return curve


def signal_moments(signals: Signals | None, end: int) -> dict[str, list[float]]:
    """Per signal, [mean, std] of its values dated before grid period ``end`` (the training periods)."""
    if signals is None:
        return {}
    known = signals.values[:, :max(end - signals.first, 0)]
    return {name: list(_moments(row)) for name, row in zip(signals.names, known)}


def neighbour_curves(embeddings: np.ndarray, units: np.ndarray, start: np.ndarray, k: int, horizon: int,
                     ids: np.ndarray | None = None) -> np.ndarray:
    """[n, horizon] per product: mean first-``horizon`` units of its k most similar *other* products with history.

    Products that start inside ``units`` are references; a product is never its own
    neighbour (its curve is its training target), nor is a row with the same ``ids`` entry (a copy
    of the product, as the trend report's occlusion makes one per word), and a product with copies
    is one reference, its first row: so copies appended to a panel leave every other row's
    neighbours as they were. Cells no neighbour observed are NaN.
    """
    ids = np.arange(units.shape[0]) if ids is None else np.asarray(ids)
    refs, curves = launch_curves(units, start, horizon)
    return neighbour_mean(embeddings, embeddings[refs], curves, k, query_ids=ids, reference_ids=ids[refs],
                          ordered=False)


def launch_curves(units: np.ndarray, start: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(refs, curves [len(refs), horizon]): the first ``horizon`` units of every product that starts
    inside ``units`` (NaN where the data ends first): what retrieval features average."""
    T = units.shape[1]
    refs = np.flatnonzero((start >= 0) & (start < T))
    cols = start[refs, None] + np.arange(horizon)[None, :]
    return refs, np.where(cols < T, units[refs[:, None], np.clip(cols, 0, T - 1)], np.nan)


def attribute_curves(values: pd.DataFrame, units: np.ndarray, start: np.ndarray, horizon: int) -> np.ndarray:
    """[n, horizon, columns]: per product and attribute column, the mean launch curve of the *other*
    products with the same value (a target encoding, leave-one-out, as LightGBM on one-hots would learn).

    Each step's mean is shrunk toward the overall launch curve with the weight of ``ATTRIBUTE_PRIOR``
    products, so a rare value says little and an unseen one (next season) gives the overall curve.
    A product's own curve never enters its feature: it is its training target.
    """
    refs, curves = launch_curves(units, start, horizon)
    ids = np.arange(len(values))
    return reference_attribute_curves(values, ids, values.iloc[refs], curves, ids[refs])


def reference_attribute_curves(values: pd.DataFrame, ids: np.ndarray, ref_values: pd.DataFrame,
                               ref_curves: np.ndarray, ref_ids: np.ndarray) -> np.ndarray:
    """[n, horizon, columns]: :func:`attribute_curves` of the products ``values``/``ids`` over the references
    (``ref_values``, their launch ``ref_curves``, ``ref_ids``); a product's own reference row, found by id,
    never enters its feature."""
    n, horizon = len(values), ref_curves.shape[1]
    if len(ref_ids) == 0:
        return np.full((n, horizon, values.shape[1]), np.nan)
    seen = np.isfinite(ref_curves)
    filled = np.nan_to_num(ref_curves)
    row = pd.Series(np.arange(len(ref_ids))).groupby(np.asarray(ref_ids)).first()  # id -> its reference row
    own = pd.Series(np.asarray(ids)).map(row).to_numpy(dtype=float)
    has_own = np.isfinite(own)
    own_row = np.where(has_own, own, 0).astype(np.int64)
    own_sum = np.where(has_own[:, None], filled[own_row], 0.0)
    own_count = np.where(has_own[:, None], seen[own_row], 0.0)
    total_sum, total_count = filled.sum(0) - own_sum, seen.sum(0) - own_count
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = total_sum / total_count  # [n, H]: the overall curve without the product itself
    out = np.empty((n, horizon, values.shape[1]))
    for k, column in enumerate(values.columns):
        codes, _ = pd.factorize(pd.concat([ref_values[column], values[column]]).astype(str))
        ref_codes, codes = codes[:len(ref_values)], codes[len(ref_values):]
        value_sum = np.zeros((max(codes.max(initial=0), ref_codes.max(initial=0)) + 1, horizon))
        value_count = np.zeros_like(value_sum)
        np.add.at(value_sum, ref_codes, filled)
        np.add.at(value_count, ref_codes, seen)
        same = (has_own & (ref_codes[own_row] == codes))[:, None]  # its own row counted in its value's sums
        s, c = value_sum[codes] - np.where(same, own_sum, 0.0), value_count[codes] - np.where(same, own_count, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, :, k] = (s + ATTRIBUTE_PRIOR * prior) / (c + ATTRIBUTE_PRIOR)
    return out


def recent_launch_curves(z: np.ndarray, start_col: np.ndarray, window: int, ages: int) -> tuple[np.ndarray, np.ndarray]:
    """([G, ages] mean, [G, ages] count) over grid columns ``t`` taken as forecast origins: the mean
    of ``z`` at age ``a`` of the products that started in the ``window`` columns before ``t`` and
    reached age ``a`` before ``t`` (only cells dated before the origin; NaN where none did).

    The level of the latest launches: a launch season that sells more than the average launch
    (online_retail's autumn, a strong fashion season) shows in it before the new products sell.
    """
    G = z.shape[1]
    sums, counts = np.zeros((G + 1, ages)), np.zeros((G + 1, ages))
    inside = np.flatnonzero((start_col >= 0) & (start_col < G))
    for a in range(ages):
        cols = start_col[inside] + a
        ok = cols < G
        rows, cols = inside[ok], cols[ok]
        value = z[rows, cols]
        seen = np.isfinite(value)
        np.add.at(sums[1:, a], start_col[rows][seen], value[seen])
        np.add.at(counts[1:, a], start_col[rows][seen], 1.0)
    sums, counts = np.cumsum(sums, 0), np.cumsum(counts, 0)  # row s: launches in columns before s
    t = np.arange(G)[:, None]
    hi = np.clip(t - np.arange(ages)[None, :], 0, G)  # a launch at s is seen at age a before t when s + a < t
    lo = np.clip(t - window, 0, G)
    cols = np.arange(ages)[None, :]
    total = np.where(hi > lo, sums[hi, cols] - sums[lo, cols], 0.0)
    count = np.where(hi > lo, counts[hi, cols] - counts[lo, cols], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


TRANSFORMS = {  # name -> (forward, inverse) on units >= 0
    "log1p": (lambda u: np.log1p(np.clip(u, 0, None)), np.expm1),
    "sqrt": (lambda u: np.sqrt(np.clip(u, 0, None)), lambda v: np.square(np.clip(v, 0, None))),
    "none": (lambda u: np.clip(u, 0, None), lambda v: v),
}


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def _moments(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 1.0
    std = float(x.std())
    return float(x.mean()), std if std > 1e-6 else 1.0


def calendar_features(dates: pd.DatetimeIndex) -> np.ndarray:
    """[len(dates), 4]: sin/cos of week of year and of month (smooth, wrap around the year)."""
    week = dates.isocalendar().week.to_numpy(dtype=float)
    month = dates.month.to_numpy(dtype=float)
    a, b = 2 * np.pi * week / 52.18, 2 * np.pi * month / 12
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1).astype(np.float32)


def padded_grid(panel: Panel, context_length: int, horizon: int) -> pd.DatetimeIndex:
    """The dates of :class:`PanelFeatures`' grid: ``context_length`` periods before the panel, then up to
    ``horizon`` periods after its end or its latest start, whichever is later."""
    last = max(panel.n_periods, int(panel.start.astype(np.int64).max(initial=0)) + 1) + horizon
    offset = pd.tseries.frequencies.to_offset(panel.freq)
    return pd.date_range(panel.dates[0] - context_length * offset, periods=context_length + last, freq=offset)


# --- features on a padded grid ------------------------------------------------
class PanelFeatures:
    """A panel's features on a grid padded by ``L`` periods before and enough after.

    Grid column ``c`` is period ``c - L``. ``gather(items, origins)`` builds the
    tensors of a batch of windows by fancy indexing only.
    """

    def __init__(self, panel: Panel, scaler: Scaler, context_length: int, horizon: int, trend_window: int,
                 text: dict[str, torch.Tensor] | None, level_weight: float, launch_weight: float = 1.0,
                 inputs: dict[str, np.ndarray] | None = None):
        """``inputs``: the optional blocks' per-panel arrays by :attr:`Block.input <forecast.models.neural.blocks.
        Block.input>` name (:func:`optional_inputs` computes them from the config; a block is on when its
        input is here): ``age_curve`` [A] scaled, ``neighbours`` [n, horizon] and ``attributes``
        [n, horizon, k] scaled with 0 where unknown, ``recent_launches`` [G, horizon, 2] on the padded grid.
        ``launch_weight``: the loss weight of a launch window (origin at the item's start) against 1."""
        self.L, self.H, self.T = context_length, horizon, panel.n_periods
        self.level_weight, self.launch_weight = level_weight, launch_weight
        self.scaler, self.trend_window, self.text = scaler, trend_window, text
        self.start = panel.start.astype(np.int64)
        n = panel.n_items
        dates = padded_grid(panel, context_length, horizon)
        self.G = len(dates)
        self.units = self._pad(panel.units)
        self.window_scaling = scaler.scaling == "window"
        self.z = scaler.f(self.units) if self.window_scaling else scaler.units_to_z(self.units)
        self.logp = self._pad(_safe_log(panel.price)) if panel.price is not None else np.full((n, self.G), np.nan)
        listed = np.full(n, np.nan)
        if "price" in panel.products:
            listed = _safe_log(pd.to_numeric(panel.products["price"], errors="coerce").to_numpy(dtype=float))
        self.listed_logp = listed
        self.covariate_names = sorted(panel.covariates)
        covs = []
        for name in self.covariate_names:
            mean, std = scaler.covariates.get(name, [0.0, 1.0])
            covs.append((self._pad(panel.covariates[name]) - mean) / std)
        self.covs = np.stack(covs, axis=-1) if covs else np.zeros((n, self.G, 0))
        self.calendar = calendar_features(dates)
        self._trend: dict[int, np.ndarray] = {}
        self._trend_tables: dict[tuple, torch.Tensor] = {}
        self._tables: dict[torch.device, WindowTables] = {}
        self.inputs = dict(inputs or {})
        signals = standardised_signals(panel.signals, scaler.signals)
        if signals is not None:
            self.inputs["signals"] = signals

    @property
    def signals(self) -> Signals | None:
        """The standardised signals the model reads (None: trained without any)."""
        return self.inputs.get("signals")

    def _pad(self, a: np.ndarray) -> np.ndarray:
        out = np.full((a.shape[0], self.G), np.nan)
        out[:, self.L:self.L + a.shape[1]] = a
        return out

    @property
    def widths(self) -> dict[str, dict[str, int]]:
        """{"context"|"future"|"static": {block: width}}, read off one gathered window, in the order
        the network concatenates them: a block added to :data:`~forecast.models.neural.blocks.BLOCKS` is sized
        here without more code."""
        batch = self.gather(np.zeros(1, dtype=np.int64), self.start[:1].clip(0, self.T))
        return {part: {name: int(block.shape[-1]) for name, block in batch[part].items()} for part in PARTS}

    def trend_z(self, end: int) -> np.ndarray:
        """Scaled trend of the series cut at period ``end`` (so no later period leaks in)."""
        if end not in self._trend:
            units = self.units.copy()
            units[:, self.L + end:] = np.nan
            trend = centred_moving_average(units, self.trend_window)
            self._trend[end] = self.scaler.f(trend) if self.window_scaling else self.scaler.units_to_z(trend)
        return self._trend[end]

    def gather(self, items, origins, target_end: int | None = None) -> dict[str, torch.Tensor]:
        """The batch of windows (item, origin): every block of :data:`~forecast.models.neural.blocks.BLOCKS`
        that is on, then the targets, masked from period ``target_end`` on.

        ``items``/``origins`` are arrays or int64 tensors; the batch is gathered on the tensors'
        device (numpy: the CPU) from :meth:`tables` by index, so a GPU assembles its own windows.
        The values are those of the per-window numpy code this replaced, to the bit
        (tests/test_gather.py keeps that code as the reference): what does not depend on the
        origin is precomputed per (item, period) in float64 and rounded once; the window's
        statistics are computed in float64 as before. Few, large index operations: on a CPU a
        torch call costs microseconds whatever its size.
        """
        items, origins = torch.as_tensor(items, dtype=torch.int64), torch.as_tensor(origins, dtype=torch.int64)
        w = Window(self, items, origins)
        batch = {part: {block.name: block.build(w) for block in blocks_on(self, part)} for part in PARTS}
        batch.update(self._targets(w, self.T if target_end is None else int(target_end)))
        batch.update(self._text_batch(items, w.tab))
        return batch

    def _targets(self, w: Window, target_end: int) -> dict[str, torch.Tensor]:
        """The window's targets (NaN from period ``target_end`` on), indices, level and loss weight."""
        nan = torch.full((), float("nan"), dtype=torch.float64, device=w.device)
        beyond = w.future_periods >= target_end
        y = w.tab.z.index_select(0, w.at_future).view(w.B, w.H)
        trend = self.trend_table(min(target_end, self.T), w.device).index_select(0, w.at_future).view(w.B, w.H)
        level = w.level
        if self.window_scaling:
            y, trend = y / level[:, None], trend / level[:, None]
        price_y = self.scaler.logprice_to_z(w.tab.logp.index_select(0, w.at_future).view(w.B, w.H))
        weight = (level / self.scaler.launch_level) ** self.level_weight if self.window_scaling else level
        if self.launch_weight != 1.0:
            weight = torch.where(w.origins == w.start, weight * self.launch_weight, weight)
        return {
            "y": torch.where(beyond, nan, y).float(), "price_y": torch.where(beyond, nan, price_y).float(),
            "trend_y": torch.where(beyond, nan, trend).float(),
            "item": w.items, "origin": w.origins, "level": level.float(), "weight": weight.float(),
        }

    def tables(self, device: torch.device | str = "cpu") -> "WindowTables":
        """The feature arrays as tensors on ``device``, built once per device (see :class:`WindowTables`)."""
        device = torch.device(device)
        if device not in self._tables:
            cpu = self._tables.get(torch.device("cpu")) or WindowTables.build(self)
            self._tables[torch.device("cpu")] = cpu
            self._tables[device] = cpu.to(device)
        return self._tables[device]

    def trend_table(self, end: int, device: torch.device) -> torch.Tensor:
        """:meth:`trend_z` as a flat float64 tensor on ``device`` (row item * G + column), kept per (end, device)."""
        key = (end, device)
        if key not in self._trend_tables:
            self._trend_tables[key] = torch.from_numpy(self.trend_z(end)).view(-1).to(device)
        return self._trend_tables[key]

    def _signal_blocks(self, items: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Context [B, L, S + 1] (standardised values, 0 where unknown; known flag) and static
        [B, 2 S + 1] (mean over the context, over its last 4 steps; share of steps known)."""
        values = signal_windows(self.signals, items, origins, self.L)  # only values dated before the origin
        known = np.isfinite(values)
        flag = known.any(-1)
        zeroed = np.nan_to_num(values)
        recent = known[:, -4:].sum(1)
        static = np.concatenate([
            zeroed.sum(1) / np.maximum(known.sum(1), 1), zeroed[:, -4:].sum(1) / np.maximum(recent, 1),
            flag.mean(1, keepdims=True),
        ], axis=1)
        return np.concatenate([zeroed, flag[..., None]], axis=-1), static

    def _text_batch(self, items: torch.Tensor, tab: "WindowTables") -> dict[str, torch.Tensor]:
        """The unique products' text inputs and, per window, the row of its product."""
        if tab.text is None:
            return {}
        unique, index = torch.unique(items, sorted=True, return_inverse=True)
        out = {"text_index": index}
        for key, table in tab.text.items():
            out[f"text_{key}"] = table.index_select(0, unique)
        return out


@dataclass
class WindowTables:
    """A panel's features as tensors on one device, for :meth:`PanelFeatures.gather` to index.

    Built once per panel (and copied once per device). What does not depend on the window's
    origin is precomputed per (item, grid column) in float64, as the per-window code computed
    it, and rounded to float32 once, in one table ``cell`` whose named column ranges are
    ``columns``: ``units`` (scaled, 0 where unknown), ``observed``, ``calendar``, ``age_seen``
    (the age where observed, else 0: the context's), ``age`` (the horizon's), ``price_z``,
    ``price_known``, ``covariates`` and the ``per_age`` blocks of :data:`~forecast.models.neural.blocks.BLOCKS`
    that are on (``age_curve``, ``neighbours``, ``attributes``). What depends on the origin (the price plan,
    the context's statistics, the targets' mask) is computed per batch from the float64 arrays.
    Memory: 4 bytes x (10 + covariates + options) per (item, grid column).
    """

    cell: torch.Tensor  # [n * G, K] float32, row item * G + column
    columns: dict[str, slice]  # name -> its columns in ``cell``
    z: torch.Tensor  # [n * G] float64 scaled units, NaN where unknown
    logp: torch.Tensor  # [n * G] float64 log price, NaN where unknown
    listed_logp: torch.Tensor  # [n] float64 log of the products table's price
    start: torch.Tensor  # [n] int64
    age: torch.Tensor  # [A] float32: log1p(age) / log(53) for ages 0 .. A - 1
    recent: torch.Tensor | None  # [G, H, 2] float32 (neural.recent_launches)
    text: dict[str, torch.Tensor] | None  # per product: the embeddings, or token ids and mask

    @classmethod
    def build(cls, f: "PanelFeatures") -> "WindowTables":
        n, G = f.z.shape
        ages = np.arange(G + max(0, -int(f.start.min(initial=0))) + 1)
        age_table = np.log1p(ages) / AGE_SCALE
        age = np.clip(np.arange(G)[None, :] - f.L - f.start[:, None], 0, None)  # [n, G] age since start
        observed = np.isfinite(f.z)
        price_known = np.isfinite(f.logp)
        parts = {
            "units": np.nan_to_num(f.z) if not f.window_scaling else np.zeros((n, G)),  # "window": per batch
            "observed": observed,
            "calendar": np.broadcast_to(f.calendar[None], (n, G, f.calendar.shape[1])),
            "age_seen": np.where(observed, age_table[age], 0.0), "age": age_table[age],
            "price_z": np.where(price_known, f.scaler.logprice_to_z(np.nan_to_num(f.logp)), 0.0),
            "price_known": price_known, "covariates": np.nan_to_num(f.covs),
        }
        for block in blocks_on(f, "future"):
            if block.per_age:  # the optional launch-curve blocks (Block.per_age)
                parts[block.name] = at_age(f.inputs[block.input], age)
        columns, blocks, at = {}, [], 0
        for name, values in parts.items():
            values = np.asarray(values, dtype=np.float32).reshape(n, G, -1)
            columns[name] = slice(at, at + values.shape[-1])
            blocks.append(values)
            at += values.shape[-1]
        cell = np.concatenate(blocks, axis=-1).reshape(n * G, at)
        recent = f.inputs.get("recent_launches")
        recent = None if recent is None else torch.from_numpy(recent.astype(np.float32))
        return cls(torch.from_numpy(cell), columns, torch.from_numpy(f.z).view(-1), torch.from_numpy(f.logp).view(-1),
                   torch.from_numpy(f.listed_logp), torch.from_numpy(f.start),
                   torch.from_numpy(age_table.astype(np.float32)), recent, f.text)

    def to(self, device: torch.device) -> "WindowTables":
        moved = {name: value if name == "columns" else _to(value, device) for name, value in vars(self).items()}
        return WindowTables(**moved)


def _to(value, device: torch.device):
    """A tensor, or a dict of tensors, on ``device`` (None stays None)."""
    if isinstance(value, dict):
        return {k: v.to(device) for k, v in value.items()}
    return None if value is None else value.to(device)


# --- datasets -----------------------------------------------------------------
class WindowDataset(Dataset):
    """Windows (item, origin); ``__getitems__`` gathers a whole batch in one vectorised call."""

    def __init__(self, features: PanelFeatures, items: np.ndarray, origins: np.ndarray, target_end: int):
        self.features, self.items, self.origins, self.target_end = features, items, origins, target_end

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices)
        return self.features.gather(self.items[idx], self.origins[idx], self.target_end)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])


class WindowIndices(Dataset):
    """A :class:`WindowDataset`'s windows as index batches only (``WINDOWS``: items, origins, target end):
    :meth:`PanelDataModule.on_after_batch_transfer` gathers them where the batch landed (the training
    device), so the DataLoader moves two int64 vectors per batch and a GPU assembles its own windows."""

    def __init__(self, windows: WindowDataset):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitems__(self, indices: list[int]) -> dict:
        idx = np.asarray(indices)
        w = self.windows
        return {WINDOWS: (torch.from_numpy(w.items[idx]), torch.from_numpy(w.origins[idx]), w.target_end)}

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])


WINDOWS = "windows"  # the key of an index batch (WindowIndices)


class EpochShuffle(Sampler[int]):
    """A fresh permutation each epoch, drawn from (seed, epoch) alone.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a
    checkpoint sees exactly the batches an uninterrupted run would have seen.

    With ``per_epoch`` (< n) each epoch visits a fresh random subset of that many
    windows (without replacement within the epoch), also drawn from (seed, epoch):
    on a large panel an epoch then costs a fixed time, and successive epochs still
    cover different windows.
    """

    def __init__(self, n: int, seed: int, per_epoch: int | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.per_epoch = n if not per_epoch else min(int(per_epoch), n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = torch.randperm(self.n, generator=generator)[:self.per_epoch]
        rank, world = _rank_and_world()
        return iter(drawn[rank:len(self) * world:world].tolist())  # DDP: each rank its equal share of one draw

    def __len__(self) -> int:
        return self.per_epoch // _rank_and_world()[1]


def _rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of a distributed training; (0, 1) when alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _as_batch(batch):
    """collate_fn: ``__getitems__`` already returns a collated batch."""
    return batch


def training_windows(start: np.ndarray, n_periods: int, val_periods: int,
                     end: np.ndarray | None = None) -> tuple[tuple, tuple, int]:
    """((items, origins) for training, (items, origins) for validation, the cut-off T - V).

    Training origins run from each item's start to the cut-off or its series' ``end``
    (exclusive; pass ``end = start`` for an item with no sales, so it gets none);
    validation has one window per item at ``max(start, cut-off)`` when that lies
    inside the data and its series. With too little data for both, validation is empty.
    """
    cut = n_periods - val_periods
    end = np.full(len(start), n_periods) if end is None else np.minimum(end, n_periods)
    starts = np.clip(start, 0, None)
    counts = np.clip(np.minimum(cut, end) - starts, 0, None)
    items = np.repeat(np.arange(len(start)), counts)
    first = np.repeat(starts, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    train = (items, first + offsets)
    val_origin = np.maximum(starts, cut)
    keep = (val_origin < end) & (val_periods > 0)
    val = (np.flatnonzero(keep), val_origin[keep])
    return train, val, cut


def without_censored_launches(windows: tuple[np.ndarray, np.ndarray], panel: Panel, periods: int) -> tuple:
    """The windows less the launch windows of items whose first sale lies in the table's first ``periods``
    periods and that have no ``launch_date``: such a product may have sold before the table began (on
    online_retail most first sales in the first weeks are slow sellers, not launches), so its empty-context
    window would teach the model a launch that never happened."""
    items, origins = windows
    if periods <= 0:
        return windows
    dated = panel.products["launch_date"].notna().to_numpy(dtype=bool) if "launch_date" in panel.products else False
    censored = (panel.start < periods) & np.logical_not(dated)
    keep = ~((origins == panel.start[items]) & censored[items])
    return items[keep], origins[keep]


class PanelDataModule(pl.LightningDataModule):
    """Windows of one panel for training and validation (see the module docstring)."""

    def __init__(self, panel: Panel, horizon: int, config: RunConfig, use_text: bool = True,
                 scaler: Scaler | None = None):
        super().__init__()
        self.panel, self.horizon, self.config, self.use_text = panel, horizon, config, use_text
        self.scaler = scaler
        self.seed = config.seed  # the training windows' draws; each member of neural.members sets its own
        self.features: PanelFeatures | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.features is not None:
            return
        T = self.panel.n_periods
        val_periods = self.config.train.val_periods
        val_periods = self.horizon if val_periods is None else val_periods
        end = np.where(self.panel.has_history, self.panel.end, self.panel.start)  # no windows without sales
        train, val, cut = training_windows(self.panel.start, T, min(val_periods, T - 1), end)
        if val_periods > 0 and (len(train[0]) == 0 or len(val[0]) == 0):
            log.warning("too few periods (%d) to hold out %d for validation: training without it", T, val_periods)
            train, val, cut = training_windows(self.panel.start, T, 0, end)
        train = without_censored_launches(train, self.panel, self.config.neural.censored_launches)
        self.cut = cut
        self.scaler = self.scaler or Scaler.fit(self.panel, end=cut if len(val[0]) else T,
                                                transform=self.config.neural.transform,
                                                scaling=self.config.neural.scaling, launch_periods=self.horizon,
                                                signals=self.config.neural.signals)
        self.features = build_features(self.panel, self.scaler, self.config, self.horizon, self.use_text)
        self.train_set = WindowDataset(self.features, *train, target_end=cut)
        self.val_set = WindowDataset(self.features, *val, target_end=T)
        log.info("windows: %d training, %d validation (cut-off at period %d of %d)",
                 len(self.train_set), len(self.val_set), cut, T)

    @property
    def has_validation(self) -> bool:
        return len(self.val_set) > 0

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, EpochShuffle(len(self.train_set), self.seed,
                                                         self.config.train.windows_per_epoch))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, None)

    def _loader(self, dataset: WindowDataset, sampler: Sampler | None) -> DataLoader:
        """``train.batch_size`` is the global batch: with DDP each of the W processes takes 1/W of it, so an
        epoch makes the same optimiser steps on the same number of windows as one process would
        (experiments/results/ddp_accuracy.md: a full batch per process trained half the steps)."""
        workers = self.config.train.num_workers
        per_process = max(1, self.config.train.batch_size // _rank_and_world()[1])
        source = dataset if workers > 0 else WindowIndices(dataset)  # workers: they gather, on the CPU
        return DataLoader(source, batch_size=per_process, sampler=sampler,
                          collate_fn=_as_batch, num_workers=workers, persistent_workers=workers > 0)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """An index batch (``train.num_workers: 0``) gathered into windows on the device it was moved to."""
        if WINDOWS not in batch:
            return batch
        items, origins, target_end = batch[WINDOWS]
        return self.features.gather(items, origins, target_end)


def text_inputs(descriptions: list[str], config: RunConfig) -> dict[str, torch.Tensor]:
    """Per product: {"emb": [n, d]} (frozen) or {"input_ids", "attention_mask": [n, S]}."""
    from forecast.models.encoders.text import embed_texts, tokenize
    from forecast.models.neural.devices import resolve_text_mode

    neural = resolve_text_mode(config).neural  # "auto": frozen on CPU, last-k on CUDA
    if neural.text_mode == "frozen":
        return {"emb": torch.from_numpy(embed_texts(descriptions, neural.text_encoder, neural.max_tokens))}
    return tokenize(descriptions, neural.text_encoder, neural.max_tokens)


def standardised_signals(signals: Signals | None, moments: dict[str, list[float]]) -> Signals | None:
    """The signals a model was trained with (``moments``: the Scaler's), standardised; None without any."""
    if not moments:
        return None
    missing = [name for name in moments if signals is None or name not in signals.names]
    if missing:
        raise ForecastError(f"the model was trained with the signal(s) {', '.join(missing[:8])}"
                            f"{' ...' if len(missing) > 8 else ''}, which the data lacks: pass the same --signals")
    rows = [signals.names.index(name) for name in moments]
    mean, std = (np.array([moments[name][k] for name in moments])[:, None] for k in (0, 1))
    picked = [np.flatnonzero(np.isin(rows, used)) for used in signals.items]  # the item's signals, renumbered
    return replace(signals, names=list(moments), values=(signals.values[rows] - mean) / std, items=picked)


@dataclass
class Reference:
    """The training panel's products that the retrieval features are computed from: a saved model keeps
    them, so a product's forecast depends on its own inputs and the model only, never on the other
    products forecast with it (its batch-mates). One row per product that started inside the training
    data: its id, start date, first ``horizon`` units (NaN where the data ended first), description
    embedding (``neural.knn_feature``) and attribute values (``neural.attribute_curves``)."""

    ids: np.ndarray  # [R] str
    start: pd.DatetimeIndex  # [R] the period each started in
    launched: np.ndarray  # [R] bool: started after the training data's first period (else it may be older)
    curves: np.ndarray  # [R, horizon] units
    embeddings: np.ndarray | None = None  # [R, d] float32
    attributes: pd.DataFrame | None = None  # [R, columns] text

    @classmethod
    def of(cls, panel: Panel, scaler: Scaler, config: RunConfig, horizon: int, use_text: bool) -> "Reference":
        nt = config.neural
        refs, curves = launch_curves(panel.units, panel.start.astype(np.int64), horizon)
        embeddings = attributes = None
        if nt.knn_feature and use_text:
            from forecast.models.encoders.text import embed_texts

            embeddings = embed_texts(panel.descriptions, nt.text_encoder, nt.max_tokens)[refs]
        if nt.attribute_curves and use_text and scaler.attributes:
            attributes = known_attributes(panel, scaler.attributes).iloc[refs].reset_index(drop=True)
        start = panel.start.astype(np.int64)[refs]
        return cls(np.asarray(panel.item_ids)[refs].astype(str), panel.dates[start], start > 0, curves,
                   embeddings, attributes)

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) for a safetensors file: numbers as tensors, ids, dates and attributes as JSON."""
        import json

        tensors = {"curves": torch.from_numpy(np.ascontiguousarray(self.curves, dtype=np.float64))}
        if self.embeddings is not None:
            tensors["embeddings"] = torch.from_numpy(np.ascontiguousarray(self.embeddings, dtype=np.float32))
        meta = {"ids": json.dumps(self.ids.tolist()), "start": json.dumps([d.isoformat() for d in self.start]),
                "launched": json.dumps(self.launched.tolist()),
                "attributes": json.dumps(None if self.attributes is None else self.attributes.to_dict("list"))}
        return tensors, meta

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> "Reference":
        import json

        attributes = json.loads(meta["attributes"])
        return cls(np.array(json.loads(meta["ids"]), dtype=str), pd.DatetimeIndex(json.loads(meta["start"])),
                   np.array(json.loads(meta["launched"]), dtype=bool), tensors["curves"].numpy(), tensors["embeddings"].numpy() if "embeddings" in tensors else None,
                   None if attributes is None else pd.DataFrame(attributes))


def recent_from_reference(reference: Reference, scaler: Scaler, grid: pd.DatetimeIndex, freq: str, window: int,
                          horizon: int) -> np.ndarray:
    """The ``recent_launches`` block [len(grid), horizon, 2] over the feature grid's columns: the mean scaled
    launch curve of the reference products launched in the ``window`` periods before each column, as far as
    observed then (:func:`recent_launch_curves`), or the overall age curve where none was; products that
    started in the training data's first period are left out (they may be older)."""
    start, curves = reference.start[reference.launched], scaler.units_to_z(reference.curves[reference.launched])
    span = pd.date_range(min(start.min(), grid[0]) if len(start) else grid[0], grid[-1], freq=freq)
    offset = span.get_indexer([grid[0]])[0]
    cols = span.get_indexer(start)
    keep = cols >= 0  # a start off the grid (another anchor) cannot be placed
    z = np.full((int(keep.sum()), len(span)), np.nan)
    ages = cols[keep, None] + np.arange(horizon)[None, :]
    inside = ages < len(span)
    z[np.nonzero(inside)[0], ages[inside]] = curves[keep][inside]
    mean, count = recent_launch_curves(z, cols[keep], window, horizon)
    overall = np.asarray(scaler.age_curve[:horizon], dtype=float)[None, :]  # where no recent launch did
    return np.stack([np.where(count > 0, mean, overall), count > 0], axis=-1)[offset:]


def build_features(panel: Panel, scaler: Scaler, config: RunConfig, horizon: int, use_text: bool,
                   reference: Reference | None = None) -> PanelFeatures:
    """The panel's features; the retrieval blocks (neighbours, attributes, recent launches) come from
    ``reference``, the training panel's products (default: this panel, as in training)."""
    nt = config.neural
    text = text_inputs(panel.descriptions, config) if use_text else None
    reference = reference or Reference.of(panel, scaler, config, horizon, use_text)
    return PanelFeatures(panel, scaler, nt.context_length, horizon, nt.trend_window, text, nt.level_weight,
                         nt.launch_weight, optional_inputs(panel, scaler, config, horizon, use_text, reference))


def optional_inputs(panel: Panel, scaler: Scaler, config: RunConfig, horizon: int, use_text: bool,
                    reference: Reference) -> dict[str, np.ndarray]:
    """The per-panel arrays of the optional blocks the config turns on (``Block.input`` -> array; the
    signals come with the panel), scaled as :class:`PanelFeatures` reads them."""
    nt = config.neural
    ids = np.asarray(panel.item_ids).astype(str)
    inputs = {}
    if nt.age_curve:
        inputs["age_curve"] = np.asarray(scaler.age_curve, dtype=float)
    if nt.knn_feature and use_text:
        from forecast.models.encoders.text import embed_texts

        embeddings = embed_texts(panel.descriptions, nt.text_encoder, nt.max_tokens)
        inputs["neighbours"] = scaled_curves(scaler, neighbour_mean(
            embeddings, reference.embeddings, reference.curves, nt.knn_feature, query_ids=ids,
            reference_ids=reference.ids, ordered=False))
    if nt.attribute_curves and use_text and scaler.attributes:
        inputs["attributes"] = scaled_curves(scaler, reference_attribute_curves(
            known_attributes(panel, scaler.attributes), ids, reference.attributes, reference.curves, reference.ids))
    if nt.recent_launches and scaler.scaling != "window":
        grid = padded_grid(panel, nt.context_length, horizon)
        inputs["recent_launches"] = recent_from_reference(reference, scaler, grid, panel.freq, nt.recent_launches,
                                                          horizon)
    return inputs


def scaled_curves(scaler: Scaler, curves: np.ndarray) -> np.ndarray:
    """Launch curves in units as a block reads them: on the scaled scale, 0 where unknown."""
    return np.nan_to_num(scaler.units_to_z(curves), nan=0.0)


def known_attributes(panel: Panel, columns: list[str]) -> pd.DataFrame:
    """The products' values of the attribute columns a model was trained with (blank: a value of its own)."""
    missing = [c for c in columns if c not in panel.products]
    if missing:
        raise ForecastError(f"the model was trained with the attribute column(s) {', '.join(missing)}, "
                            f"which the products table lacks")
    return panel.products[columns].fillna("")
