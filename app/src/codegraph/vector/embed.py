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


def normalize(vector: np.ndarray) -> np.ndarray | None:
    """Unit length (cosine similarity becomes inner product); None for a zero vector."""
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else None


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
