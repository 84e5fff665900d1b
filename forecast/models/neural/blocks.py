"""The neural models' input blocks, one table entry each.

A batch of windows holds three parts, each a dict of named blocks: ``context`` (per context step
``[B, L, width]``, read by the sequence encoder), ``future`` (per horizon step ``[B, H, width]``, read by
the decoder) and ``static`` (per window ``[B, width]``, read with the summary). :data:`BLOCKS` lists every
block with the part that reads it, when it is on, how a batch's tensor is built, and whether it is
computed from the window's own sales (``reads_history``): a model that reads no history (``text``)
never reads such a block, which :class:`forecast.models.neural.network.NetworkSpec` derives from here.

:meth:`forecast.models.neural.features.PanelFeatures.gather` builds the blocks that are on, in the
table's order; the network sizes its layers from :attr:`PanelFeatures.widths` and concatenates
blocks by name. Adding a block is one entry here (plus its test); a block that needs a per-panel
array an option turns on also names it as ``input``, which ``features.build_features`` computes.
The values are those of the per-window numpy code the tensor gather replaced, to the bit
(tests/test_gather.py keeps that code as the reference).

This module imports nothing from ``features``: a :class:`Window` is handed the features object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

PARTS = ("context", "future", "static")  # each a dict of named blocks in a batch


class Window:
    """A batch of windows (item, origin) being gathered: its indices, and the values several blocks share,
    each computed once, on first use, on the device of ``items``.

    ``features`` is a :class:`~forecast.models.neural.features.PanelFeatures`; its tables (see
    ``WindowTables``) hold what does not depend on the origin per (item, grid column), in float32 as one
    ``cell`` table of named columns; what depends on the origin is computed here from the float64 arrays.
    """

    def __init__(self, features, items: torch.Tensor, origins: torch.Tensor):
        self.f, self.items = features, items
        self.device = items.device
        self.tab = features.tables(self.device)
        self.origins = origins.to(self.device)
        self.B, self.L, self.H, self.G = len(items), features.L, features.H, features.G
        # grid columns of periods t-L .. t-1 and t .. t+H-1 (a negative one wraps, as numpy's indexing did)
        self.future_periods = self.origins[:, None] + torch.arange(self.H, device=self.device)
        base = (items * self.G)[:, None]
        self.at_context = (base + torch.remainder(self.origins[:, None] + torch.arange(self.L, device=self.device),
                                                  self.G)).view(-1)
        self.at_future = (base + torch.remainder(self.future_periods + self.L, self.G)).view(-1)
        self.zero = torch.zeros((), dtype=torch.float64, device=self.device)

    # --- per (item, grid column) values, read at the context's or the horizon's columns ------------------
    @cached_property
    def _context_cells(self) -> torch.Tensor:
        return self.tab.cell.index_select(0, self.at_context).view(self.B, self.L, -1)

    @cached_property
    def _future_cells(self) -> torch.Tensor:
        return self.tab.cell.index_select(0, self.at_future).view(self.B, self.H, -1)

    def context_cells(self, column: str) -> torch.Tensor:
        """[B, L, width] of a named column of the cell table over the context steps."""
        return self._context_cells[..., self.tab.columns[column]]

    def future_cells(self, column: str) -> torch.Tensor:
        """[B, H, width] of a named column of the cell table over the horizon steps."""
        return self._future_cells[..., self.tab.columns[column]]

    # --- the context's sales ----------------------------------------------------------------------------
    @cached_property
    def _raw_context_z(self) -> torch.Tensor:
        """[B, L] float64 scaled units of the context (NaN where unknown), before any window level."""
        return self.tab.z.index_select(0, self.at_context).view(self.B, self.L)

    @cached_property
    def observed(self) -> torch.Tensor:
        """[B, L] bool: the context steps with a known value."""
        return torch.isfinite(self._raw_context_z)

    @cached_property
    def n_observed(self) -> torch.Tensor:
        return self.observed.sum(1)

    @cached_property
    def level(self) -> torch.Tensor:
        """[B] float64: the window's level, 1 + mean f(units) of its context with ``neural.scaling: window``
        (a launch window: the scaler's launch level), else 1."""
        if not self.f.window_scaling:
            return torch.ones(self.B, dtype=torch.float64, device=self.device)
        n = self.n_observed
        return torch.where(n > 0, 1.0 + torch.nansum(self._raw_context_z, 1) / n.clamp(min=1),
                           self.f.scaler.launch_level)

    @cached_property
    def context_z(self) -> torch.Tensor:
        """[B, L] float64 scaled units of the context divided by the window's level (NaN where unknown)."""
        z = self._raw_context_z
        return z / self.level[:, None] if self.f.window_scaling else z

    @cached_property
    def start(self) -> torch.Tensor:
        """[B] int64: each window's item's start period."""
        return self.tab.start.index_select(0, self.items)

    # --- the price plan: the price at t - 1 carried flat, else the listed price -------------------------
    @cached_property
    def context_log_price(self) -> torch.Tensor:
        return self.tab.logp.index_select(0, self.at_context).view(self.B, self.L)

    @cached_property
    def plan(self) -> torch.Tensor:
        """[B] float64 log price planned for the horizon (NaN: unknown)."""
        plan = self.context_log_price[:, -1]
        return torch.where(torch.isfinite(plan), plan, self.tab.listed_logp.index_select(0, self.items))

    @cached_property
    def price_plan(self) -> torch.Tensor:
        """[B, 2] float32: the standardised planned log price (0 when unknown) and its known flag."""
        known = torch.isfinite(self.plan)
        plan_z = torch.where(known, self.f.scaler.logprice_to_z(torch.nan_to_num(self.plan)), self.zero)
        return torch.stack([plan_z, known.double()], dim=1).float()

    @cached_property
    def signal_blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(context [B, L, S + 1], static [B, 2 S + 1]) of the signals; their window code stays numpy."""
        context, static = self.f._signal_blocks(self.items.cpu().numpy(), self.origins.cpu().numpy())
        return (torch.from_numpy(context.astype(np.float32)).to(self.device),
                torch.from_numpy(static.astype(np.float32)).to(self.device))


# --- how each block is built from a window ----------------------------------------------------------------
def _context_units(w: Window) -> torch.Tensor:
    """Scaled units, 0 where unknown (``window`` scaling: divided by the window's level, so per batch)."""
    if w.f.window_scaling:
        return torch.nan_to_num(w.context_z).float()[..., None]
    return w.context_cells("units")


def _context_price(w: Window) -> torch.Tensor:
    """Standardised log price, log price relative to the plan, and the price's known flag."""
    known = torch.isfinite(w.plan)
    relative = torch.where(torch.isfinite(w.context_log_price) & known[:, None],
                           torch.nan_to_num(w.context_log_price - w.plan[:, None]), w.zero)
    return torch.cat([w.context_cells("price_z"), relative.float()[..., None], w.context_cells("price_known")], dim=-1)


def _held_covariates(w: Window) -> torch.Tensor:
    """The covariates held at their value at t - 1 over the horizon."""
    last = w.context_cells("covariates")[:, -1]
    return last[:, None, :].expand(w.B, w.H, last.shape[-1])


def _recent_launches(w: Window) -> torch.Tensor:
    """As known at the origin, at each step's age since start."""
    horizon_age = (w.future_periods - w.start[:, None]).clamp(min=0, max=w.H - 1)
    return w.tab.recent[torch.remainder(w.origins[:, None] + w.L, w.G), horizon_age]


def _static_age(w: Window) -> torch.Tensor:
    return w.tab.age.index_select(0, (w.origins - w.start).clamp(min=0, max=len(w.tab.age) - 1))[:, None]


def _sales(w: Window) -> torch.Tensor:
    """What the context's sales say: the share of steps observed, the mean (``window`` scaling: the log
    level) and the last-4 mean of observed scaled units."""
    n, z = w.n_observed, torch.nan_to_num(w.context_z)
    last4 = w.observed[:, -4:].sum(1)
    return torch.stack([
        n.double() / w.L,
        torch.log(w.level) if w.f.window_scaling else torch.where(n > 0, z.sum(1) / n.clamp(min=1), w.zero),
        torch.where(last4 > 0, z[:, -4:].sum(1) / last4.clamp(min=1), w.zero),
    ], dim=1).float()


@dataclass(frozen=True)
class Block:
    """One named input block of the network."""

    part: str  # which part of the network reads it: "context", "future" or "static" (see the module docstring)
    name: str  # its key in the batch's part, and in NetworkSpec.blocks
    build: Callable[[Window], torch.Tensor]  # the batch's tensor, from the window's shared values
    input: str | None = None  # the features' optional input it needs (None: always on); on when it is present
    option: str | None = None  # the config key that turns the input on (features.optional_inputs then builds it)
    reads_history: bool = False  # computed from the window's own sales: the text-only model never reads it
    # its input is a launch curve, [A] for every item or [n, A, ...] per item, read at each cell's age since
    # start (the last age beyond A): precomputed per (item, grid column) into the cell table (WindowTables)
    per_age: bool = False

    def on(self, features) -> bool:
        """Whether ``features`` (a PanelFeatures) have this block."""
        return self.input is None or features.inputs.get(self.input) is not None


def _cells(part: str, column: str) -> Callable[[Window], torch.Tensor]:
    """A block that is a named column of the cell table, at the context's or the horizon's steps."""
    return (lambda w: w.context_cells(column)) if part == "context" else (lambda w: w.future_cells(column))


BLOCKS: tuple[Block, ...] = (  # per part, in the order the network concatenates them
    Block("context", "units", _context_units, reads_history=True),
    Block("context", "observed", _cells("context", "observed"), reads_history=True),
    Block("context", "calendar", _cells("context", "calendar")),  # sin/cos of week of year and of month
    Block("context", "age", _cells("context", "age_seen"), reads_history=True),  # where observed, else 0
    Block("context", "price", _context_price),
    Block("context", "covariates", _cells("context", "covariates")),  # standardised, 0 where unknown
    Block("context", "signals", lambda w: w.signal_blocks[0], input="signals", option="neural.signals"),
    Block("future", "calendar", _cells("future", "calendar")),
    Block("future", "age", _cells("future", "age")),
    Block("future", "price_plan", lambda w: w.price_plan[:, None, :].expand(w.B, w.H, 2)),
    Block("future", "covariates", _held_covariates),
    # the retrieval blocks: launch curves of other products at each step's age since start
    Block("future", "age_curve", _cells("future", "age_curve"), input="age_curve", option="neural.age_curve",
          per_age=True),
    Block("future", "neighbours", _cells("future", "neighbours"), input="neighbours", option="neural.knn_feature",
          per_age=True),
    Block("future", "attributes", _cells("future", "attributes"), input="attributes",
          option="neural.attribute_curves", per_age=True),
    Block("future", "recent_launches", _recent_launches, input="recent_launches", option="neural.recent_launches"),
    Block("static", "age", _static_age),  # at the origin
    Block("static", "sales", _sales, reads_history=True),
    Block("static", "price_plan", lambda w: w.price_plan),
    Block("static", "signals", lambda w: w.signal_blocks[1], input="signals", option="neural.signals"),
)


def blocks_on(features, part: str) -> list[Block]:
    """The part's blocks that ``features`` (a PanelFeatures) have, in the table's order."""
    return [block for block in BLOCKS if block.part == part and block.on(features)]


def at_age(curve: np.ndarray, age: np.ndarray) -> np.ndarray:
    """A ``per_age`` block's input at ``age`` [n, G] (ages since start): ``curve`` [A] is every item's,
    [n, A, ...] each item's own; an age from A on reads the last one."""
    if curve.ndim == 1:
        return curve[np.clip(age, 0, len(curve) - 1)]
    return curve[np.arange(len(curve))[:, None], np.clip(age, 0, curve.shape[1] - 1)]


def history_blocks(part: str) -> frozenset[str]:
    """The blocks of a part computed from the window's own sales (``Block.reads_history``)."""
    return frozenset(b.name for b in BLOCKS if b.part == part and b.reads_history)
