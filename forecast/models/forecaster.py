"""``NeuralForecaster``: the fusion network and its ablations behind the Forecaster protocol.

``fit`` builds the windows (:class:`~forecast.data.datamodule.PanelDataModule`),
trains with a seeded, deterministic Lightning ``Trainer`` (by default a fixed
number of epochs on every window; with ``train.val_periods > 0`` early stopping on
``val/loss``; best + last checkpoints) and keeps the best weights; ``predict``
forecasts every item from the panel's end (or a new product from its launch).

``save(dir)`` writes ``model.safetensors`` (weights, no pickle), ``config.yaml``
(the RunConfig) and ``meta.json`` (network shape, scaler statistics, a SHA-256 of
the weights); ``NeuralForecaster.load(dir)`` rebuilds the same network, so the
forecasts are identical. In ``frozen`` text mode the encoder is not saved (it is
reloaded from its path); in ``last-k``/``full`` its fine-tuned weights are part
of the state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from forecast.config import RunConfig
from forecast.data.datamodule import PanelDataModule, Scaler, build_features
from forecast.data.panel import Panel
from forecast.errors import ConfigError, ForecastError
from forecast.forecaster import HISTORY, NEW, Forecast, forecast_targets
from forecast.models.calibration import BiasCorrection, check as check_correction
from forecast.models.lightning_module import ForecastSystem
from forecast.models.network import VARIANTS, ForecastNetwork, NetworkSpec

log = logging.getLogger(__name__)

WEIGHTS, CONFIG, META = "model.safetensors", "config.yaml", "meta.json"
FORMAT = "forecast-neural/2"  # /2: scaler has "scaling" and "launch_level" (per-window levels)
READABLE_FORMATS = ("forecast-neural/1", FORMAT)  # /1 files load as global scaling
PREDICT_BATCH = 2048
CALIBRATION_WINDOWS = 20_000  # training windows the bias correction is estimated on


class NeuralForecaster:
    """``fusion`` (text + history), ``sequence`` (history only) or ``text`` (description only)."""

    groups = frozenset({HISTORY, NEW})

    def __init__(self, name: str, config: RunConfig, logger=None, callbacks: list | None = None):
        if name not in VARIANTS:
            raise ConfigError(f"unknown neural model {name!r}; choose from {', '.join(VARIANTS)}")
        self.name, self.config, self.logger = name, config, logger
        self.callbacks = list(callbacks or [])  # extra Lightning callbacks (e.g. for tests or tuning)
        self.network: ForecastNetwork | None = None
        self.scaler: Scaler | None = None
        self.horizon: int | None = None
        self.fit_info: dict = {}
        self.correction = BiasCorrection()

    @property
    def uses_text(self) -> bool:
        return self.name in ("fusion", "text")

    @property
    def text_mode(self) -> str:
        return self.config.neural.text_mode

    # --- training ------------------------------------------------------------
    def fit(self, panel: Panel, horizon: int, ckpt_path: str | None = None) -> None:
        """Train on every window of the panel; ``ckpt_path`` resumes a Lightning checkpoint."""
        with _threads(self.config.train.num_threads):
            self._fit(panel, horizon, ckpt_path)

    def _fit(self, panel: Panel, horizon: int, ckpt_path: str | None) -> None:
        tic = time.perf_counter()
        nt = self.config.neural
        check_correction(nt.bias_correction, nt.transform, nt.scaling)
        L.seed_everything(self.config.seed, workers=True, verbose=False)
        datamodule = PanelDataModule(panel, horizon, self.config, use_text=self.uses_text)
        datamodule.setup("fit")
        network = self._build_network(self._spec(datamodule, horizon))
        if self.uses_text:
            network.set_text_stats(self._base_embeddings(datamodule))
        system = ForecastSystem(
            network, {"demand": nt.demand_weight, "price": nt.price_weight, "trend": nt.trend_weight},
            self.config.train.learning_rate, self.config.train.text_learning_rate, self.config.train.weight_decay,
            seed=self.config.seed, lr_schedule=self.config.train.lr_schedule,
        )
        persistent = self.config.train.checkpoint_dir
        with (nullcontext(persistent) if persistent else tempfile.TemporaryDirectory()) as root:
            dirpath = Path(root) / self.name if persistent else Path(root)
            trainer = self._trainer(dirpath, datamodule.has_validation)
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if best:
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                system.load_state_dict(state)
        self.network = network.cpu().eval()
        self.scaler, self.horizon = datamodule.scaler, horizon
        self.correction = self._fit_correction(datamodule)
        self.fit_info = {
            "epochs": trainer.current_epoch, "seconds": round(time.perf_counter() - tic, 2),
            "train_windows": len(datamodule.train_set), "val_windows": len(datamodule.val_set),
            "best_val_loss": _float(trainer.checkpoint_callback.best_model_score) if best else None,
        }
        log.info("%s: trained %d epoch(s) on %d windows in %.1fs (best val/loss %s)", self.name,
                 self.fit_info["epochs"], self.fit_info["train_windows"], self.fit_info["seconds"],
                 self.fit_info["best_val_loss"])

    def _fit_correction(self, datamodule: PanelDataModule) -> BiasCorrection:
        """The bias correction (neural.bias_correction) from a seeded sample of training windows."""
        kind = self.config.neural.bias_correction
        if kind == "none" or len(datamodule.train_set) == 0:
            return BiasCorrection()
        data = datamodule.train_set
        rng = np.random.default_rng(self.config.seed)
        pick = rng.choice(len(data), min(CALIBRATION_WINDOWS, len(data)), replace=False)
        preds, truths = [], []
        with torch.inference_mode(), _threads(self.config.train.num_threads):
            for lo in range(0, len(pick), PREDICT_BATCH):
                idx = pick[lo:lo + PREDICT_BATCH]
                batch = data.features.gather(data.items[idx], data.origins[idx], data.target_end)
                preds.append(self.network(batch)["demand"].numpy().astype(float))
                truths.append(batch["y"].numpy().astype(float))
        s = self.scaler
        v_pred = np.clip(np.concatenate(preds) * s.units_std + s.units_mean, 0, None)
        return BiasCorrection.fit(kind, v_pred, np.concatenate(truths) * s.units_std + s.units_mean)

    def _spec(self, datamodule: PanelDataModule, horizon: int) -> NetworkSpec:
        f, nt = datamodule.features, self.config.neural
        text_dim = 0
        if self.uses_text:
            text_dim = f.text["emb"].shape[1] if "emb" in f.text else self._text_encoder().dim
        return NetworkSpec(self.name, f.n_context, f.n_future, f.n_static, horizon, text_dim,
                           nt.hidden_size, nt.dropout, nt.sequence_encoder, nt.fusion, nt.text_dropout)

    def _base_embeddings(self, datamodule: PanelDataModule) -> torch.Tensor:
        """The products' sentence vectors before any fine-tuning (memoised by embed_texts)."""
        if "emb" in datamodule.features.text:
            return datamodule.features.text["emb"]
        from forecast.encoders.text import embed_texts

        nt = self.config.neural
        return torch.from_numpy(embed_texts(datamodule.panel.descriptions, nt.text_encoder, nt.max_tokens))

    def _text_encoder(self):
        """The trainable encoder (last-k/full), built once; None when frozen or unused."""
        if not self.uses_text or self.text_mode == "frozen":
            return None
        if getattr(self, "_encoder", None) is None:
            from forecast.encoders.text import TextEncoder

            nt = self.config.neural
            self._encoder = TextEncoder(nt.text_encoder, nt.text_mode, nt.finetune_layers)
        return self._encoder

    def _build_network(self, spec: NetworkSpec) -> ForecastNetwork:
        return ForecastNetwork(spec, self._text_encoder())

    def _trainer(self, dirpath: Path, validate: bool) -> L.Trainer:
        tc = self.config.train
        monitor = "val/loss" if validate else None
        checkpoint = ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode="min",
                                     save_top_k=1, save_last=True)
        callbacks = [checkpoint, *self.callbacks]
        if validate:
            callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=tc.patience))
        cpu = not torch.cuda.is_available()
        return L.Trainer(
            max_epochs=tc.max_epochs, accelerator="auto", devices=1,
            deterministic=True if cpu else "warn",  # cuDNN's LSTM has no deterministic kernel
            logger=self.logger if self.logger is not None else False,
            callbacks=callbacks, enable_progress_bar=tc.progress, enable_model_summary=False,
            limit_train_batches=tc.limit_train_batches, limit_val_batches=1.0 if validate else 0,
            num_sanity_val_steps=0, gradient_clip_val=1.0, log_every_n_steps=20,
        )

    # --- forecasting ---------------------------------------------------------
    def predict(self, panel: Panel, horizon: int) -> Forecast:
        if self.network is None:
            raise ForecastError(f"{self.name}: predict called before fit (or load)")
        if horizon > self.horizon:
            raise ForecastError(f"{self.name} was trained for a horizon of {self.horizon}; cannot forecast {horizon}")
        rows, start = forecast_targets(panel, self.groups)
        if len(rows) == 0:
            return Forecast(self.name, rows, start, np.zeros((0, horizon)))
        features = build_features(panel, self.scaler, self.config, self.horizon, self.uses_text)
        if features.n_context != self.network.spec.n_context:
            raise ForecastError(f"{self.name}: the data's covariates {features.covariate_names} differ from "
                                f"those the model was trained with")
        outputs = {"demand": [], "price": [], "trend": []}
        levels = []
        self.network.eval()
        with torch.inference_mode(), _threads(self.config.train.num_threads):
            for lo in range(0, len(rows), PREDICT_BATCH):
                batch = features.gather(rows[lo:lo + PREDICT_BATCH], start[lo:lo + PREDICT_BATCH])
                out = self._forward_mixed(batch, panel.has_history[rows[lo:lo + PREDICT_BATCH]])
                levels.append(batch["level"].numpy().astype(float))
                for key in outputs:
                    outputs[key].append(out[key][:, :horizon].numpy().astype(float))
        demand, price, trend = (np.concatenate(outputs[k]) for k in ("demand", "price", "trend"))
        level = np.concatenate(levels)
        has_price = panel.price is not None or "price" in panel.products
        units = self.scaler.z_to_units(demand, level)
        if self.correction.kind != "none":
            units = self.correction.apply(np.clip(demand * self.scaler.units_std + self.scaler.units_mean, 0, None))
        return Forecast(
            self.name, rows, start, units,
            self.scaler.z_to_price(price) if has_price else None, self.scaler.z_to_units(trend, level),
        )

    def _forward_mixed(self, batch: dict[str, torch.Tensor], history: np.ndarray) -> dict[str, torch.Tensor]:
        """The network's outputs; for fusion with ``neural.text_mix`` (items with history) or
        ``neural.text_mix_new`` (new items) w < 1, the scaled outputs are w x (with the description)
        + (1 - w) x (with the average description): meant for a model trained with text dropout."""
        nt = self.config.neural
        w = torch.from_numpy(np.where(history, nt.text_mix, nt.text_mix_new).astype(np.float32))[:, None]
        out = self.network(batch)
        if self.name != "fusion" or bool((w >= 1).all()):
            return out
        self.network.without_text = True
        try:
            plain = self.network(batch)
        finally:
            self.network.without_text = False
        return {k: w * out[k] + (1 - w) * plain[k] for k in out}

    # --- persistence -----------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Weights (safetensors), RunConfig (YAML) and metadata (JSON) in ``directory``."""
        from safetensors.torch import save_file

        if self.network is None:
            raise ForecastError(f"{self.name}: nothing to save before fit")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": FORMAT})
        self.config.to_yaml(directory / CONFIG)
        meta = {
            "format": FORMAT, "name": self.name, "horizon": self.horizon,
            "spec": self.network.spec.to_dict(), "scaler": self.scaler.to_dict(),
            "text_mode": self.text_mode, "weights_sha256": _sha256(directory / WEIGHTS),
            "fit": self.fit_info, "bias_correction": self.correction.to_dict(),
        }
        (directory / META).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "NeuralForecaster":
        """Rebuild a saved model; a missing, corrupt or modified file is a ForecastError."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (WEIGHTS, CONFIG, META):
            if not (directory / name).is_file():
                raise ForecastError(f"{directory}: not a saved neural model ({name} is missing)")
        try:
            meta = json.loads((directory / META).read_text())
            if meta.get("format") not in READABLE_FORMATS:
                raise ValueError(f"unknown format {meta.get('format')!r}")
        except (ValueError, json.JSONDecodeError) as err:
            raise ForecastError(f"{directory / META}: unreadable model metadata ({err})") from None
        if _sha256(directory / WEIGHTS) != meta.get("weights_sha256"):
            raise ForecastError(f"{directory / WEIGHTS}: the weights file is corrupt or was modified "
                                f"(checksum mismatch); retrain with `python -m forecast fit`")
        config = RunConfig.from_yaml(directory / CONFIG)
        model = cls(meta["name"], config)
        spec = NetworkSpec(**meta["spec"])
        network = model._build_network(spec)
        try:
            state = load_file(str(directory / WEIGHTS))
            network.load_state_dict(state, strict=True)
        except Exception as err:  # safetensors / torch raise various types for a broken file
            raise ForecastError(f"{directory / WEIGHTS}: cannot load the weights ({err})") from None
        model.network = network.eval()
        model.scaler = Scaler.from_dict(meta["scaler"])
        model.horizon = int(meta["horizon"])
        model.fit_info = meta.get("fit", {})
        model.correction = BiasCorrection(**meta.get("bias_correction", {}))
        return model


@contextmanager
def _threads(n: int | None):
    """torch's CPU thread count set to n for a block, then restored (it is process-wide)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _float(value) -> float | None:
    return None if value is None else round(float(value), 5)
