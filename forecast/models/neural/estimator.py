"""``NeuralEstimator``: the fusion network and its ablations behind the Model protocol.

``fit`` builds the windows (:class:`~forecast.models.neural.features.PanelDataModule`),
trains with a seeded, deterministic Lightning ``Trainer`` (by default a fixed
number of epochs on every window; with ``train.val_periods > 0`` early stopping on
``val/loss``; best + last checkpoints) and keeps the best weights; ``predict``
forecasts every item from the panel's end (or a new product from its launch). With
``neural.members: K`` it trains K networks one after another (seeds ``seed`` .. ``seed + K - 1``,
each the full budget and its own checkpoint folder) and forecasts their mean
(:class:`~forecast.models.neural.network.NetworkAverage`); the pipeline's backtest asks for one.

``save(dir)`` writes ``model.safetensors`` (weights, no pickle), ``config.yaml``
(the RunConfig), ``meta.json`` (network shape, scaler statistics, the data's frequency),
``reference.safetensors`` (the training products the retrieval features are computed from,
:class:`~forecast.models.neural.features.Reference`: a product's forecast never depends on
the other products passed to ``predict``) and ``SHA256SUMS`` (a SHA-256 of each of those
files, ``sha256sum -c`` format, :mod:`forecast.core.checksums`; the forecast ranges saved beside
them are added there); ``NeuralEstimator.load(dir)`` refuses a folder where any file differs from its sum and
rebuilds the same network, so the forecasts are identical. In ``frozen`` text mode the encoder is not saved (it is
reloaded from its path); in ``last-k``/``full`` its fine-tuned weights are part
of the state.

Fusion with ``neural.text_mix`` (items with history) or ``text_mix_new`` (new
products) ``w < 1`` forecasts ``w x`` (with the description) ``+ (1 - w) x`` (with
the average description), in the scaled space: meant for a network trained with
``neural.text_dropout``. ``neural.bias_correction`` (opt-in) is fitted on a seeded
sample of training windows after training (:mod:`forecast.models.calibration`)
and saved with the model.

``ResumableNeural`` wraps an estimator for ``fit --resume``: each training checkpoints
into its folder of the run's :func:`work_directory` and a finished one is reloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from forecast.core import checksums
from forecast.core.config import RunConfig
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError, DataError, ForecastError
from forecast.core.files import disk_faults
from forecast.models.base import BOTH_GROUPS, Prediction, forecast_targets
from forecast.models.calibration import BiasCorrection
from forecast.models.neural.devices import is_rank_zero, resolve_text_mode, trainer_devices
from forecast.models.neural.features import PanelDataModule, Reference, Scaler, build_features
from forecast.models.neural.network import ForecastNetwork, NetworkAverage, NetworkSpec
from forecast.models.neural.progress import EpochBar
from forecast.models.neural.rank_watch import RankWatch
from forecast.models.neural.ranks import reporting_dead_workers
from forecast.models.neural.system import ForecastSystem
from forecast.models.neural.variants import READS
from forecast.core.progress import Progress

log = logging.getLogger(__name__)


class EpochLine(Callback):
    """Plain progress for logs (``--no-progress``, or stderr not a terminal): one line per epoch."""

    def __init__(self, name: str):
        self.name = name

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        losses = ", ".join(f"{k} {float(v):.4f}" for k, v in trainer.callback_metrics.items() if k.endswith("/loss"))
        log.info("%s: epoch %d/%d%s", self.name, trainer.current_epoch + 1, trainer.max_epochs,
                 f" ({losses})" if losses else "")


WEIGHTS, CONFIG, META, SUMS = "model.safetensors", "config.yaml", "meta.json", checksums.SUMS
REFERENCE = "reference.safetensors"  # /6: the training products the retrieval features are computed from
FORMAT = "forecast-neural/7"  # /7: fit.members networks (neural.members); /6: REFERENCE; /5: scaler.attributes ...
WITH_REFERENCE = (FORMAT, "forecast-neural/6")
READABLE_FORMATS = (*WITH_REFERENCE, "forecast-neural/5", "forecast-neural/4")  # older: no REFERENCE (see predict)
# Prediction variants fusion offers the backtest (see forecast.models.base.Prediction.variants):
# new products forecast from the average description only, as when the words do not generalise.
AVERAGE_TEXT_NEW = "average_text_new"
VARIANTS = {AVERAGE_TEXT_NEW: {"neural.text_mix_new": 0.0}}
PREDICT_BATCH = 2048
CALIBRATION_WINDOWS = 20_000  # training windows the bias correction is estimated on


class NeuralEstimator:
    """``fusion`` (text + history), ``sequence`` (history only) or ``text`` (description only)."""

    def __init__(self, name: str, config: RunConfig, logger=None, callbacks: list | None = None,
                 checkpoint_dir: Path | None = None):
        if name not in READS:
            raise ConfigError(f"unknown neural model {name!r}; choose from {', '.join(READS)}")
        self.name, self.config, self.logger = name, resolve_text_mode(config), logger
        self.groups = BOTH_GROUPS  # a network forecasts products with history and new ones alike
        self.callbacks = list(callbacks or [])  # extra Lightning callbacks (e.g. for tests or tuning)
        self.checkpoint_dir = checkpoint_dir  # Lightning checkpoints (best + last); None: a temp dir per fit
        self.network: ForecastNetwork | None = None
        self.scaler: Scaler | None = None
        self.horizon: int | None = None
        self.freq: str | None = None  # the training panel's frequency: predict data must have the same
        self.fit_info: dict = {}
        self.correction = BiasCorrection()
        self.sales_price: bool | None = None  # whether the training sales had a price column (None: unknown)
        self.reference: Reference | None = None  # the training products (features.Reference); None: saved by /5
        self.variant: str | None = None  # the prediction variant fit chose for new products (use_variant)

    @property
    def uses_text(self) -> bool:
        return "text" in READS[self.name]

    @property
    def text_mode(self) -> str:
        return self.config.neural.text_mode

    # --- training ------------------------------------------------------------
    def fit(self, panel: Panel, horizon: int, ckpt_path: str | None = None) -> None:
        """Train on every window of the panel; ``ckpt_path`` resumes a Lightning checkpoint.

        The descriptions are embedded first, with the process's threads: training sets torch to
        ``train.num_threads`` (1) for its small networks, which would encode a catalogue's 100,000
        descriptions on one core."""
        if self.uses_text:
            from forecast.models.encoders.text import embed_texts

            embed_texts(panel.descriptions, self.config.neural.text_encoder, self.config.neural.max_tokens)
        with _threads(self.config.train.num_threads):
            self._fit(panel, horizon, ckpt_path)

    def _fit(self, panel: Panel, horizon: int, ckpt_path: str | None) -> None:
        tic = time.perf_counter()
        pl.seed_everything(self.config.seed, workers=True, verbose=False)
        datamodule = PanelDataModule(panel, horizon, self.config, use_text=self.uses_text)
        datamodule.setup("fit")
        spec = self._spec(datamodule, horizon)
        networks, trainer, best = [], None, ""
        for k in range(self.config.neural.members):
            network, trainer, best = self._train_member(datamodule, spec, k, ckpt_path)
            networks.append(network)
        self.network = networks[0] if len(networks) == 1 else NetworkAverage(networks)
        self.scaler, self.horizon, self.freq = datamodule.scaler, horizon, panel.freq
        self.sales_price = panel.price is not None
        self.reference = Reference.of(panel, self.scaler, self.config, horizon, self.uses_text)
        self.correction = self._fit_correction(datamodule)
        self.fit_info = {
            "epochs": trainer.current_epoch, "seconds": round(time.perf_counter() - tic, 2),
            "train_windows": len(datamodule.train_set), "val_windows": len(datamodule.val_set),
            "best_val_loss": _float(trainer.checkpoint_callback.best_model_score) if best else None,
            "members": len(networks),
        }
        best_val = self.fit_info["best_val_loss"]
        log.info("%s: trained %s%d epoch(s) on %d windows in %.1fs%s", self.name,
                 f"{len(networks)} networks, " if len(networks) > 1 else "",
                 self.fit_info["epochs"], self.fit_info["train_windows"], self.fit_info["seconds"],
                 f" (best val/loss {best_val:.4f})" if best_val is not None else "")

    def _train_member(self, datamodule: PanelDataModule, spec: NetworkSpec, k: int,
                      ckpt_path: str | None) -> tuple[ForecastNetwork, pl.Trainer, str]:
        """Network k of ``neural.members``: seed + k for its weights, dropout and window draws, the full
        training budget, its own checkpoint folder (a resumed fit continues each member from its own)."""
        seed = self.config.seed + k
        pl.seed_everything(seed, workers=True, verbose=False)
        datamodule.seed = seed
        network = self._build_network(spec, fresh_encoder=k > 0)
        if self.uses_text:
            network.set_text_stats(self._base_embeddings(datamodule))
        nt = self.config.neural
        system = ForecastSystem(
            network, {"demand": nt.demand_weight, "price": nt.price_weight, "trend": nt.trend_weight},
            self.config.train.learning_rate, self.config.train.text_learning_rate, self.config.train.weight_decay,
            lr_schedule=self.config.train.lr_schedule, seed=seed,
        )
        folder = self.name if k == 0 else f"{self.name}-member{k}"
        persistent = self.checkpoint_dir
        with (nullcontext(persistent) if persistent else tempfile.TemporaryDirectory()) as root:
            dirpath = Path(root) / folder if persistent else Path(root)
            if k and ckpt_path is not None:  # resuming: member 0 had a checkpoint; this one may have its own
                last = dirpath / "last.ckpt"
                ckpt_path = str(last) if last.is_file() and _readable_checkpoint(last) else None
            trainer = self._trainer(dirpath, datamodule.has_validation)
            with (reporting_dead_workers(resumable=persistent is not None),  # DDP: a rank that died, by name
                  disk_faults(f"training checkpoints in {dirpath} (--checkpoint-dir, or the temporary folder "
                              f"$TMPDIR when not resuming)")):
                _fit_interruptibly(trainer, system, datamodule, ckpt_path)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if best:
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                system.load_state_dict(state)
            with reporting_dead_workers(resumable=persistent is not None):
                trainer.strategy.barrier("best weights loaded")  # DDP: rank 0 keeps the folder until all have read
        return network.cpu().eval(), trainer, best

    def _spec(self, datamodule: PanelDataModule, horizon: int) -> NetworkSpec:
        f, nt = datamodule.features, self.config.neural
        text_dim = 0
        if self.uses_text:
            text_dim = f.text["emb"].shape[1] if "emb" in f.text else self._text_encoder().dim
        # text dropout serves the with/without-description blend of fusion; the text-only model
        # has nothing but the description to tell products apart
        text_dropout = nt.text_dropout if self.name == "fusion" else 0.0
        return NetworkSpec(self.name, f.widths, horizon, text_dim, nt.hidden_size, nt.dropout,
                           nt.sequence_encoder, nt.fusion, text_dropout)

    def _fit_correction(self, datamodule: PanelDataModule) -> BiasCorrection:
        """The bias correction (neural.bias_correction) from a seeded sample of training windows."""
        kind = self.config.neural.bias_correction
        data = datamodule.train_set
        if kind == "none" or len(data) == 0:
            return BiasCorrection()
        pick = np.random.default_rng(self.config.seed).choice(len(data), min(CALIBRATION_WINDOWS, len(data)),
                                                              replace=False)
        preds, truths = [], []
        with torch.inference_mode():
            for lo in range(0, len(pick), PREDICT_BATCH):
                batch = data.__getitems__(pick[lo:lo + PREDICT_BATCH])
                preds.append(self.network(batch)["demand"].numpy().astype(float))
                truths.append(batch["y"].numpy().astype(float))
        s = self.scaler
        v_pred = np.clip(np.concatenate(preds) * s.units_std + s.units_mean, 0, None)
        return BiasCorrection.fit(kind, v_pred, np.concatenate(truths) * s.units_std + s.units_mean)

    def _base_embeddings(self, datamodule: PanelDataModule) -> torch.Tensor:
        """The products' sentence vectors before any fine-tuning (memoised by embed_texts)."""
        if "emb" in datamodule.features.text:
            return datamodule.features.text["emb"]
        from forecast.models.encoders.text import embed_texts

        nt = self.config.neural
        return torch.from_numpy(embed_texts(datamodule.panel.descriptions, nt.text_encoder, nt.max_tokens))

    def _text_encoder(self):
        """The trainable encoder (last-k/full), built once; None when frozen or unused."""
        if not self.uses_text or self.text_mode == "frozen":
            return None
        if getattr(self, "_encoder", None) is None:
            from forecast.models.encoders.text import TextEncoder

            nt = self.config.neural
            self._encoder = TextEncoder(nt.text_encoder, nt.text_mode, nt.finetune_layers)
        return self._encoder

    def _build_network(self, spec: NetworkSpec, fresh_encoder: bool = False) -> ForecastNetwork:
        """The network; ``fresh_encoder``: with a text encoder of its own (a fine-tuned encoder is part of
        one member's weights, never shared between the members of ``neural.members``)."""
        if fresh_encoder:
            self._encoder = None
        return ForecastNetwork(spec, self._text_encoder())

    def _trainer(self, dirpath: Path, validate: bool) -> pl.Trainer:
        tc = self.config.train
        monitor = "val/loss" if validate else None
        checkpoint = ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode="min",
                                     save_top_k=1, save_last=True)
        callbacks = [checkpoint, *self.callbacks, EpochBar(self.name) if tc.progress else EpochLine(self.name),
                     RankWatch()]
        if validate:
            callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=tc.patience))
        cpu = not torch.cuda.is_available()
        return pl.Trainer(
            max_epochs=tc.max_epochs, **trainer_devices(tc),
            use_distributed_sampler=False,  # EpochShuffle shards its own per-epoch draw across DDP ranks
            deterministic=True if cpu else "warn",  # cuDNN's LSTM has no deterministic kernel
            logger=self.logger if self.logger is not None else False,
            callbacks=callbacks, enable_progress_bar=tc.progress, enable_model_summary=False,
            limit_train_batches=tc.limit_train_batches, limit_val_batches=1.0 if validate else 0,
            num_sanity_val_steps=0, gradient_clip_val=tc.gradient_clip_val, log_every_n_steps=tc.log_every_n_steps,
        )

    # --- forecasting ---------------------------------------------------------
    def predict(self, panel: Panel, horizon: int) -> Prediction:
        if self.network is None:
            raise ForecastError(f"{self.name}: predict called before fit (or load)")
        if horizon > self.horizon:
            raise ForecastError(f"{self.name} was trained for a horizon of {self.horizon}; cannot forecast {horizon}")
        rows, start = forecast_targets(panel, self.groups)
        if len(rows) == 0:
            return Prediction(self.name, rows, start, np.zeros((0, horizon)))
        if self.reference is None:
            log.warning("%s: saved by an older version without its training products: retrieval features come "
                        "from the products forecast together (refit to make each forecast independent)", self.name)
        features = build_features(panel, self.scaler, self.config, self.horizon, self.uses_text, self.reference)
        if features.widths != self.network.spec.blocks:
            raise ForecastError(f"{self.name}: the data's inputs {features.widths} differ from those the model "
                                f"was trained with {self.network.spec.blocks} (covariates: "
                                f"{features.covariate_names})")
        history = panel.has_history[rows]
        # offered whether or not new products are among these rows (a history row's variant is its forecast),
        # so a model chosen as the variant on the backtest can forecast a panel without new products
        offers_variant = self.name == "fusion" and self.config.neural.text_mix_new != 0
        outputs = {"demand": [], "price": [], "trend": [], "variant": []}
        levels = []
        self.network.eval()
        with torch.inference_mode(), _threads(self.config.train.num_threads):
            progress = Progress(f"{self.name}: forecasting products", len(rows))
            for lo in range(0, len(rows), PREDICT_BATCH):
                progress.step(lo)
                batch = features.gather(rows[lo:lo + PREDICT_BATCH], start[lo:lo + PREDICT_BATCH])
                part = history[lo:lo + PREDICT_BATCH]
                weights = self._text_weights(part)
                out = self.network(batch)
                # fusion's forecast from the average description, only where a weight or the variant needs it
                wanted = self.name == "fusion" and (offers_variant or bool((weights < 1).any()))
                plain = self.network(batch, average_text=True) if wanted else None
                mixed = _mix(out, plain, weights)
                if offers_variant:
                    outputs["variant"].append(_mix(out, plain, self._text_weights(part, new=0.0))["demand"]
                                              [:, :horizon].numpy().astype(float))
                levels.append(batch["level"].numpy().astype(float))
                for key in ("demand", "price", "trend"):
                    outputs[key].append(mixed[key][:, :horizon].numpy().astype(float))
        demand, price, trend = (np.concatenate(outputs[k]) for k in ("demand", "price", "trend"))
        level = np.concatenate(levels)
        has_price = panel.price is not None or "price" in panel.products
        variants = {AVERAGE_TEXT_NEW: self._units(np.concatenate(outputs["variant"]), level)} if offers_variant else {}
        return Prediction(
            self.name, rows, start, self._units(demand, level),
            self.scaler.z_to_price(price) if has_price else None, self.scaler.z_to_units(trend, level), variants,
        )

    def _units(self, demand: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Units from the demand head's scaled output (bias-corrected when configured)."""
        if self.correction.kind != "none":
            return self.correction.apply(np.clip(demand * self.scaler.units_std + self.scaler.units_mean, 0, None))
        return self.scaler.z_to_units(demand, level)

    def _text_weights(self, history: np.ndarray, new: float | None = None) -> torch.Tensor:
        """[B, 1] weight of the own-description forecast: neural.text_mix for items with history,
        neural.text_mix_new (or ``new``) for new products."""
        nt = self.config.neural
        w = np.where(history, nt.text_mix, nt.text_mix_new if new is None else new)
        return torch.from_numpy(w.astype(np.float32))[:, None]

    def use_variant(self, label: str) -> None:
        """Forecast from now on (and once saved) as the prediction variant ``label`` says."""
        self.config = self.config.updated(VARIANTS[label])
        self.variant = label

    # --- persistence -----------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Weights (safetensors), RunConfig (YAML), metadata (JSON) and their checksums in ``directory``."""
        if self.network is None:
            raise ForecastError(f"{self.name}: nothing to save before fit")
        directory = Path(directory)
        with disk_faults(f"the {self.name} model to {directory} (--checkpoint-dir)"):
            return self._save(directory)

    def _save(self, directory: Path) -> Path:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": FORMAT})
        self.config.to_yaml(directory / CONFIG)
        meta = {
            "format": FORMAT, "name": self.name, "horizon": self.horizon, "freq": self.freq,
            "spec": self.network.spec.to_dict(), "scaler": self.scaler.to_dict(),
            "text_mode": self.text_mode, "fit": self.fit_info, "bias_correction": self.correction.to_dict(),
            "sales_price": self.sales_price, "variant": self.variant,
        }
        (directory / META).write_text(json.dumps(meta, indent=2))
        tensors, about = self.reference.to_tensors()
        save_file(tensors, str(directory / REFERENCE), metadata=about)
        checksums.write(directory, (WEIGHTS, CONFIG, META, REFERENCE))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "NeuralEstimator":
        """Rebuild a saved model; a missing, corrupt or modified file is a ForecastError."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (WEIGHTS, CONFIG, META, SUMS):
            if not (directory / name).is_file():
                raise ForecastError(f"{directory}: not a saved neural model ({name} is missing)")
        reference = [REFERENCE] if (directory / REFERENCE).exists() else []  # none before /6
        checksums.verify(directory, (WEIGHTS, CONFIG, META, *reference), "saved neural model")
        try:
            meta = json.loads((directory / META).read_text())
            if meta.get("format") not in READABLE_FORMATS:
                raise ValueError(f"unknown format {meta.get('format')!r}")
        except (ValueError, json.JSONDecodeError) as err:
            raise ForecastError(f"{directory / META}: unreadable model metadata ({err})") from None
        config = RunConfig.from_yaml(directory / CONFIG)
        model = cls(meta["name"], config)
        spec = NetworkSpec(**meta["spec"])
        members = int(meta.get("fit", {}).get("members", 1))
        nets = [model._build_network(spec, fresh_encoder=k > 0) for k in range(members)]
        network = nets[0] if members == 1 else NetworkAverage(nets)
        try:
            state = load_file(str(directory / WEIGHTS))
            network.load_state_dict(state, strict=True)
        except Exception as err:  # safetensors / torch raise various types for a broken file
            raise ForecastError(f"{directory / WEIGHTS}: cannot load the weights ({err})") from None
        model.network = network.eval()
        model.scaler = Scaler.from_dict(meta["scaler"])
        model.horizon, model.freq = int(meta["horizon"]), meta["freq"]
        model.fit_info = meta.get("fit", {})
        model.correction = BiasCorrection(**meta["bias_correction"])
        model.sales_price = meta.get("sales_price")  # absent in models saved before it was recorded
        model.variant = meta.get("variant")  # likewise
        if meta["format"] in WITH_REFERENCE:
            model.reference = _load_reference(directory / REFERENCE)
        return model

    def checked_inputs(self, panel: Panel, sales_file: str, where: str | Path) -> Panel:
        """The panel as this model reads it, or a DataError naming the column it lacks.

        A sales ``price`` column or a covariate the model was trained with must be in the data (without
        it the model would forecast from different inputs without a word); a covariate it was not
        trained with is left out, with a WARNING naming it."""
        trained = list(self.scaler.covariates)
        lacking = [name for name in trained if name not in panel.covariates]
        if self.sales_price and panel.price is None:
            lacking.insert(0, "price")
        if lacking:
            raise DataError(f"{sales_file}: no column(s) {', '.join(map(repr, lacking))}, which the model in {where} "
                            f"was trained with; add them to the sales table (as in the training data), or fit a "
                            f"model on data without them")
        extra = sorted(set(panel.covariates) - set(trained))
        if extra:
            log.warning("%s: column(s) %s are ignored: the model in %s was not trained with them (refit to use them)",
                        sales_file, ", ".join(map(repr, extra)), where)
            panel = replace(panel, covariates={name: panel.covariates[name] for name in trained})
        if self.sales_price is False and panel.price is not None:
            log.warning("%s: column 'price' is ignored: the model in %s was trained without prices", sales_file, where)
            panel = replace(panel, price=None)
        return panel


class ResumableNeural:
    """A neural model whose training survives a kill: ``fit --resume`` picks it up.

    Each training (one per backtest origin, one final) checkpoints every epoch
    into its own folder of the run's work directory, keyed by the training
    panel's length; a finished one is saved there too. On resume, finished
    trainings are loaded instead of retrained and an interrupted one continues
    from its last checkpoint; training is epoch-deterministic, so the result is
    the uninterrupted run's.
    """

    def __init__(self, name: str, cfg: RunConfig, workdir: Path, resume: bool, logger=None):
        self.name, self.cfg, self.workdir, self.resume, self.logger = name, cfg, workdir, resume, logger
        self.groups = BOTH_GROUPS  # a network forecasts products with history and new ones alike
        self.model = None

    def fit(self, panel: Panel, horizon: int) -> None:
        folder = self.workdir / f"{self.name}-{panel.n_periods}"
        finished = folder / "model"
        if self.resume and finished.is_dir():
            try:
                self.model = NeuralEstimator.load(finished)
                log.info("resume: %s on %d periods already trained, loaded it", self.name, panel.n_periods)
                return
            except ForecastError as err:
                log.warning("resume: the saved %s on %d periods is unreadable (%s); training it again",
                            self.name, panel.n_periods, err)
        last = folder / "checkpoints" / self.name / "last.ckpt"
        resume_from = str(last) if self.resume and last.is_file() and _readable_checkpoint(last) else None
        if resume_from:
            log.info("resume: %s continues from %s", self.name, last)
        elif folder.exists():
            shutil.rmtree(folder)
        self.model = NeuralEstimator(self.name, self.cfg, logger=self.logger, checkpoint_dir=folder / "checkpoints")
        self.model.fit(panel, horizon, ckpt_path=resume_from)
        if is_rank_zero():
            self.model.save(finished)

    def predict(self, panel: Panel, horizon: int) -> Prediction:
        return self.model.predict(panel, horizon)

    def save(self, directory: str | Path) -> Path:
        return self.model.save(directory)

    def use_variant(self, label: str) -> None:
        self.model.use_variant(label)

    @property
    def fit_info(self) -> dict:
        """The trained (or, on resume, loaded) model's training record."""
        return self.model.fit_info if self.model is not None else {}


def _mix(out: dict[str, torch.Tensor], plain: dict[str, torch.Tensor] | None,
         w: torch.Tensor) -> dict[str, torch.Tensor]:
    """w x (with the description) + (1 - w) x (with the average description), in the scaled space."""
    if plain is None:
        return out
    return {k: w * out[k] + (1 - w) * plain[k] for k in out}


def work_directory(cfg: RunConfig, sales: str, products: str) -> Path:
    """Where a fit keeps its checkpoints: one folder per (config, data), so --resume finds it."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("tracking", "output")}
    settings["train"] = {k: v for k, v in settings["train"].items() if k != "progress"}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    from forecast.data.contract import file_bytes

    for path in (sales, products, *filter(None, [cfg.data.signals])):
        digest.update(file_bytes(path))  # a pipe (--sales /dev/stdin) was read once: its remembered bytes
    return Path(cfg.output.checkpoint_dir) / "work" / digest.hexdigest()[:16]


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


def _fit_interruptibly(trainer: pl.Trainer, system: ForecastSystem, datamodule: PanelDataModule,
                       ckpt_path: str | None) -> None:
    """``trainer.fit``, giving an interrupt back as the KeyboardInterrupt it was.

    Lightning (2.x) catches Ctrl-C (and SIGTERM, which the CLI turns into one) inside
    ``fit``, marks the trainer interrupted, ignores further Ctrl-C and calls
    ``sys.exit(1)``; a SIGTERM it notices itself ends as ``SIGTERMException``. Either
    way the CLI would exit 1 without saying why: re-raise it as an interrupt (exit 130,
    MLflow run KILLED) and restore the Ctrl-C handler.
    """
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted") from None
        raise
    finally:
        if signal.getsignal(signal.SIGINT) != sigint and sigint is not None:
            try:
                signal.signal(signal.SIGINT, sigint)
            except ValueError:  # not the main thread: nothing was changed there
                pass


def _readable_checkpoint(path: Path) -> bool:
    """Whether a Lightning checkpoint loads; an unreadable one (a kill while it was written,
    a full disk) is reported and its training started again rather than failing the resume."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception as err:  # torch raises many types for a truncated or foreign file
        log.warning("resume: checkpoint %s is unreadable (%s: %s); training it again from the start",
                    path, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return False


def _load_reference(path: Path) -> Reference:
    """The training products saved beside the weights (checksummed with them)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return Reference.from_tensors({k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata())


def _float(value) -> float | None:
    return None if value is None else round(float(value), 5)
