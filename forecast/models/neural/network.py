"""The forecasting network: text + sequence encoders, fusion, per-step heads, loss.

One ``nn.Module`` serves the three variants, so the ablations differ only in
which inputs they may read:

- ``fusion``: description + sales history. The projected text vector sets the
  sequence encoder's initial state (it knows *what* it reads before reading it)
  and, with ``neural.fusion = "gated"``, a learned gate then mixes the text and
  sequence summaries per dimension (``g * seq + (1 - g) * text``): a launch
  window with an empty context can lean on the text, a long history on itself.
  With ``"init"`` only the initial-state conditioning is used.
- ``sequence``: history only (a new product is forecast from an empty context).
- ``text``: description + static/horizon covariates (calendar, price plan, age);
  it never sees a sales value.

Text dropout (``neural.text_dropout``, fusion): during training a share of the
windows read the average description (the standardised text vector set to zero),
so one network learns to forecast with and without the words. At prediction
``forward(batch, average_text=True)`` gives the forecast with the average
description, which :class:`forecast.models.neural.estimator.NeuralEstimator` blends
with the full one per item group (``neural.text_mix``, ``text_mix_new``). On
online_retail's validation origins, items with history were forecast best without
their description (the words identify an item rather than generalise), new
products best with it.

The decoder is per horizon step: the summary, the step's known-future features
(calendar, age, price plan, covariates) and a step embedding go through a small
MLP, then three linear heads give demand, price and trend in the scaled space of
:mod:`forecast.models.neural.features`. Loss: masked MSE per head, weighted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from forecast.models.encoders.sequence import make_sequence_encoder
from forecast.models.encoders.text import TextEncoder
from forecast.models.neural.blocks import history_blocks
from forecast.models.neural.variants import READS

HEADS = ("demand", "price", "trend")
TARGETS = {"demand": "y", "price": "price_y", "trend": "trend_y"}


@dataclass
class NetworkSpec:
    """Everything needed to rebuild the network (saved as JSON with the weights)."""

    variant: str
    blocks: dict[str, dict[str, int]]  # PanelFeatures.widths: {"context"|"future"|"static": {block: width}}
    horizon: int
    text_dim: int
    hidden_size: int
    dropout: float
    sequence_encoder: str
    fusion: str
    text_dropout: float = 0.0  # training only: share of windows whose text vector is zeroed (modality dropout)

    def to_dict(self) -> dict:
        return asdict(self)

    def width(self, part: str) -> int:
        """Total width of the part's blocks this variant reads."""
        return sum(self.blocks[part][name] for name in self.read_blocks(part))

    def read_blocks(self, part: str) -> list[str]:
        """The blocks of a part this variant reads: a model that reads no history (text) skips every block
        computed from the window's own sales (``Block.reads_history`` in forecast.models.neural.blocks)."""
        skipped = frozenset() if self.uses_history else history_blocks(part)
        return [name for name in self.blocks[part] if name not in skipped]

    @property
    def uses_text(self) -> bool:
        return "text" in READS[self.variant]

    @property
    def uses_history(self) -> bool:
        return "history" in READS[self.variant]


class ForecastNetwork(nn.Module):
    """Encoders + fusion + heads. ``forward(batch)`` -> {"demand", "price", "trend"}: [B, H]."""

    def __init__(self, spec: NetworkSpec, text_encoder: TextEncoder | None = None):
        super().__init__()
        if spec.variant not in READS:
            raise ValueError(f"{spec.variant!r} is not a neural model")
        self.spec = spec
        h = spec.hidden_size
        self.text_encoder = text_encoder if spec.uses_text else None
        if spec.uses_text:
            # Fixed affine normalisation of sentence vectors (set from the training products by
            # `set_text_stats`): MiniLM vectors share a large common direction and the words that
            # matter (a colour) move them little; standardising makes those differences visible.
            self.register_buffer("text_mean", torch.zeros(spec.text_dim))
            self.register_buffer("text_std", torch.ones(spec.text_dim))
            self.text_proj = nn.Sequential(nn.Linear(spec.text_dim, h), nn.GELU(), nn.Dropout(spec.dropout))
        if spec.uses_history:
            self.sequence = make_sequence_encoder(spec.sequence_encoder, spec.width("context"), h, spec.dropout)
        if spec.uses_text and spec.uses_history:
            self.init_proj = nn.Linear(h, h)
            if spec.fusion == "gated":
                self.gate = nn.Linear(2 * h, h)
        self.summary = nn.Sequential(nn.Linear(h + spec.width("static"), h), nn.GELU())
        self.step_embedding = nn.Embedding(spec.horizon, h // 4)
        self.decoder = nn.Sequential(
            nn.Linear(h + spec.width("future") + h // 4, h), nn.GELU(), nn.Dropout(spec.dropout),
            nn.Linear(h, h), nn.GELU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(h, 1) for name in HEADS})

    # --- pieces -------------------------------------------------------------
    def text_vector(self, batch: dict[str, torch.Tensor], average_text: bool = False) -> torch.Tensor:
        """[B, hidden]: encode each unique product of the batch once, then gather per window.

        ``average_text``: every window reads the average description (0 after standardising);
        in training, a ``spec.text_dropout`` share of the windows does.
        """
        if "text_emb" in batch:
            unique = batch["text_emb"]
        else:
            unique = self.text_encoder(batch["text_input_ids"], batch["text_attention_mask"])
        vectors = ((unique - self.text_mean) / self.text_std)[batch["text_index"]]
        if average_text:
            vectors = torch.zeros_like(vectors)
        elif self.training and self.spec.text_dropout > 0:
            keep = torch.rand(vectors.shape[0], 1, device=vectors.device) >= self.spec.text_dropout
            vectors = vectors * keep
        return self.text_proj(vectors)

    def set_text_stats(self, vectors: torch.Tensor) -> None:
        """Centre and scale text vectors by their per-dimension statistics over products."""
        self.text_mean.copy_(vectors.mean(0))
        self.text_std.copy_(vectors.std(0).clamp(min=1e-4))

    def joined(self, batch: dict, part: str) -> torch.Tensor:
        """The part's blocks this variant reads, concatenated on the last axis in the spec's order."""
        blocks = batch[part]
        return torch.cat([blocks[name] for name in self.spec.read_blocks(part)], dim=-1)

    def encode(self, batch: dict[str, torch.Tensor], average_text: bool = False) -> torch.Tensor:
        """The window's summary vector [B, hidden]."""
        text = self.text_vector(batch, average_text) if self.spec.uses_text else None
        if not self.spec.uses_history:
            summary = text
        elif not self.spec.uses_text:
            summary = self.sequence(self.joined(batch, "context"))
        else:
            seq = self.sequence(self.joined(batch, "context"), torch.tanh(self.init_proj(text)))
            if self.spec.fusion == "gated":
                g = torch.sigmoid(self.gate(torch.cat([seq, text], dim=-1)))
                summary = g * seq + (1 - g) * text
            else:
                summary = seq
        return self.summary(torch.cat([summary, self.joined(batch, "static")], dim=-1))

    def forward(self, batch: dict[str, torch.Tensor], average_text: bool = False) -> dict[str, torch.Tensor]:
        """``average_text``: forecast as if every product had the average description."""
        z = self.encode(batch, average_text)
        future = self.joined(batch, "future")
        B, H = future.shape[:2]
        steps = self.step_embedding.weight[:H].unsqueeze(0).expand(B, -1, -1)
        x = torch.cat([z.unsqueeze(1).expand(-1, H, -1), future, steps], dim=-1)
        hidden = self.decoder(x)
        return {name: head(hidden).squeeze(-1) for name, head in self.heads.items()}

    def loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
             weights: dict[str, float]) -> dict[str, torch.Tensor]:
        """{"loss": weighted sum, and the MSE of each head} over observed target cells."""
        w = batch.get("weight")
        parts = {name: masked_mse(out[name], batch[TARGETS[name]], w if name != "price" else None) for name in HEADS}
        parts["loss"] = sum(weights[name] * parts[name] for name in HEADS)
        return parts


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the finite target cells (0 when there are none).

    ``weight`` [B]: per-window weights (a weighted mean over cells).
    """
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    if weight is None:
        return diff.pow(2).sum() / mask.sum().clamp(min=1)
    w = weight.unsqueeze(-1) * mask
    return (w * diff.pow(2)).sum() / w.sum().clamp(min=1e-8)


class NetworkAverage(nn.Module):
    """``neural.members`` trained networks forecasting as one: the mean of their outputs in the scaled space
    (where the description mix is done too). Averaging networks that differ only in their seed removes most
    of the seed's effect on the forecast (experiments/results/ablations.md, round 9)."""

    def __init__(self, members: list[ForecastNetwork]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.spec = members[0].spec

    def forward(self, batch: dict[str, torch.Tensor], average_text: bool = False) -> dict[str, torch.Tensor]:
        outputs = [member(batch, average_text=average_text) for member in self.members]
        return {key: torch.stack([out[key] for out in outputs]).mean(dim=0) for key in outputs[0]}
