"""Sequence side: plain nn.Modules summarising a context window of sales features.

Both encoders take ``x`` [B, L, F] (left-padded windows: padded steps carry an
"observed" channel of 0, so a launch window with empty context is all padding)
and an optional initial state ``h0`` [B, hidden] (the projected text vector in the
fusion model: it tells the encoder what kind of product it reads before it reads
it). They return one summary vector [B, hidden].
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMEncoder(nn.Module):
    """A one-layer LSTM; the summary is the last hidden state."""

    def __init__(self, n_features: int, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden_size

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs [B, L, H], last hidden [B, H])."""
        state = None
        if h0 is not None:
            # The text sets the hidden state; the cell starts empty so the gates still decide.
            h = h0.unsqueeze(0).contiguous()
            state = (h, torch.zeros_like(h))
        out, (h_n, _) = self.lstm(x, state)
        return out, h_n[-1]

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self.dropout(self.states(x, h0)[1])


class AttentionEncoder(LSTMEncoder):
    """LSTM + temporal attention: the last state queries all steps (e.g. last year's peak).

    Attention over LSTM outputs rather than a TransformerEncoder: a fully padded
    launch window has no valid key, which a masked transformer turns into NaN;
    here padded steps are simply inputs with observed=0 and the recurrence is kept.
    """

    def __init__(self, n_features: int, hidden_size: int, dropout: float = 0.0):
        super().__init__(n_features, hidden_size, dropout)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        outputs, last = self.states(x, h0)
        scores = torch.einsum("blh,bh->bl", outputs, self.query(last)) / self.hidden_size**0.5
        context = torch.einsum("bl,blh->bh", scores.softmax(dim=1), outputs)
        return self.dropout(torch.tanh(self.out(torch.cat([last, context], dim=-1))))


SEQUENCE_ENCODERS = {"lstm": LSTMEncoder, "attention": AttentionEncoder}


def make_sequence_encoder(kind: str, n_features: int, hidden_size: int, dropout: float = 0.0) -> LSTMEncoder:
    """``kind``: a value of the config's ``neural.sequence_encoder`` Literal (checked when the config is built)."""
    return SEQUENCE_ENCODERS[kind](n_features, hidden_size, dropout)
