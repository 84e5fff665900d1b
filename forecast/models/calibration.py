"""Bias correction after the inverse square-root transform (``neural.bias_correction``).

Trained under MSE on ``v = sqrt(units)``, the network predicts ``E[v | x]``; its
square sits below the mean, ``E[u | x] = E[v | x]^2 + Var[v | x]``, by the
residual variance (on intermittent retail series, a lot). The correction keeps
MSE as the training objective and adds back what squaring loses, estimated on
the model's own training windows after training:

- ``variance``: per horizon step, the mean squared residual of ``v`` over all
  observed target cells, added to every forecast of that step.
- ``binned``: Duan's smearing estimate within bins of the predicted ``v`` (per
  horizon step, ``N_BINS`` quantile bins): the mean of ``u - v_hat^2`` over the
  training cells of that bin, so a product predicted near zero gets a small
  correction and a best seller a large one (the residual variance grows with
  the level).

Only the ``sqrt`` transform with global scaling is corrected; any other
combination is refused by :meth:`forecast.core.config.RunConfig.validate`. The
correction is fitted by :class:`forecast.models.neural.estimator.NeuralEstimator`
and saved with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

N_BINS = 8


@dataclass
class BiasCorrection:
    """Additive unit-space corrections [H, bins] and the bin edges of the predicted sqrt value [H, bins - 1]."""

    kind: str = "none"
    edges: list[list[float]] | None = None
    add: list[list[float]] | None = None

    @classmethod
    def fit(cls, kind: str, v_pred: np.ndarray, v_true: np.ndarray) -> "BiasCorrection":
        """From training windows: predicted and true sqrt values [n, H] (NaN: unobserved)."""
        if kind == "none":
            return cls()
        H = v_pred.shape[1]
        bins = 1 if kind == "variance" else N_BINS
        edges, add = [], []
        for h in range(H):
            ok = np.isfinite(v_true[:, h])
            p, t = v_pred[ok, h], v_true[ok, h]
            e = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])) if len(p) and bins > 1 else np.array([])
            which = np.digitize(p, e)
            if kind == "variance":
                values = [float(np.mean((t - p) ** 2)) if len(p) else 0.0]
            else:  # smearing: mean of u - v_hat^2 per bin
                values = [float(np.mean(t[which == b] ** 2 - p[which == b] ** 2)) if (which == b).any() else 0.0
                          for b in range(len(e) + 1)]
            edges.append(e.tolist())
            add.append(values)
        return cls(kind, edges, add)

    def apply(self, v_pred: np.ndarray) -> np.ndarray:
        """Units from predicted sqrt values [n, h]: ``v^2`` plus the correction, at least 0."""
        units = np.square(np.clip(v_pred, 0, None))
        if self.kind == "none":
            return units
        out = units.copy()
        for h in range(v_pred.shape[1]):
            which = np.digitize(v_pred[:, h], np.asarray(self.edges[h]))
            out[:, h] += np.asarray(self.add[h])[which]
        return np.clip(out, 0, None)

    def to_dict(self) -> dict:
        return asdict(self)
