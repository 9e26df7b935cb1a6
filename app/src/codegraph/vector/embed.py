"""A deterministic embedding computed from a node's identifiers and text.

Feature hashing (the "hashing trick"): every token is hashed with CRC32, a
stable hash (Python's hash() is salted per process), into two signed buckets of
the vector. Tokens shared by two nodes pull their vectors together, so
similarity search works with no model; identifiers weigh more than prose.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from codegraph.text import identifier_tokens

_MAX_TEXT_TOKENS = 2000
_WEIGHTS = (
    ("name", 3.0),
    ("qualified_name", 1.5),
    ("path", 0.5),
    ("docstring", 1.0),
    ("text", 1.0),
)


def _features(record: dict[str, Any]) -> list[tuple[str, float]]:
    features = [("kind:" + record["kind"], 1.0), (record["name"].lower(), 3.0)]
    for field_name, weight in _WEIGHTS:
        value = record.get(field_name)
        if value:
            tokens = identifier_tokens(value)[:_MAX_TEXT_TOKENS]
            features.extend((token, weight) for token in tokens)
    return features


def _vector(features: list[tuple[str, float]], dimension: int) -> np.ndarray:
    vector = np.zeros(dimension, dtype=np.float32)
    if not features:
        return vector
    buckets, values = [], []
    for token, weight in features:
        data = token.encode()
        for seed in (0, 0x9E3779B9):
            digest = zlib.crc32(data, seed)
            buckets.append(digest % dimension)
            values.append(weight if digest & 0x80000000 else -weight)
    np.add.at(vector, buckets, values)
    return vector


FLOAT32_MAX = float(np.finfo(np.float32).max)


def embedding_problem(values: list[float]) -> str | None:
    """Why a client's embedding cannot be stored and indexed, or None if it can.

    Embeddings are kept as 32-bit floats: a value past float32's range would become
    infinity (and the index a NaN vector), and values that all round to zero leave no
    direction to search by. Tiny (denormal) values are fine: normalize works in float64.
    """
    vector = np.asarray(values, dtype=np.float64)
    if not np.isfinite(vector).all() or float(np.abs(vector).max()) > FLOAT32_MAX:
        return f"embedding values must be finite 32-bit floats (|value| <= {FLOAT32_MAX:.7g})"
    if not vector.astype(np.float32).any():
        return "embedding is all zeros (as 32-bit floats): it has no direction to search by"
    return None


def normalize(vector: np.ndarray) -> np.ndarray | None:
    """Unit length (cosine similarity becomes inner product), as float32; None for a zero
    vector. Computed in float64: squaring tiny float32 values would underflow to zero."""
    wide = vector.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    return (wide / norm).astype(np.float32) if norm > 0 else None


def embed_record(record: dict[str, Any], dimension: int) -> np.ndarray:
    vector = normalize(_vector(_features(record), dimension))
    if vector is None:  # no usable token at all: a fixed direction keeps it searchable
        vector = np.zeros(dimension, dtype=np.float32)
        vector[0] = 1.0
    return vector


def embed_query(text: str, dimension: int) -> np.ndarray | None:
    tokens = identifier_tokens(text)
    features = [(token, 1.0) for token in tokens] + [(text.strip().lower(), 1.0)]
    return normalize(_vector(features, dimension))
