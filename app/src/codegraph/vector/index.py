"""The FAISS index and the map from its labels to node ids.

HNSW cannot delete. A node that is updated gets a new label and its old label
goes stale; a deleted node's label goes stale. A bitmap of live labels is
passed to every search as an IDSelector, so stale labels are never returned
and the graph walk keeps looking until it has k live results. Stale labels
are dropped for good by a rebuild.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import orjson

_MAGIC = b"CGVI1\n"
_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class IndexParams:
    index_type: str
    dimension: int
    M: int
    efConstruction: int
    efSearch: int


class VectorIndex:
    def __init__(self, params: IndexParams) -> None:
        self.params = params
        if params.index_type == "HNSW":
            self.index = faiss.IndexHNSWFlat(params.dimension, params.M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = params.efConstruction
        else:
            self.index = faiss.IndexFlatIP(params.dimension)
        self.ef_search = params.efSearch
        self.ids: list[str | None] = []  # label -> node id, None once stale
        self.versions: list[int] = []  # label -> node version it was built from
        self.label_of: dict[str, int] = {}
        self._live = np.zeros(1024, dtype=np.uint8)  # bitmap of live labels
        self.seq = 0  # the last vector-queue entry this index includes
        self.lock = threading.Lock()  # FAISS HNSW is not safe to add to while searching

    # ------------------------------------------------------------ mutation
    def upsert(self, ids: list[str], versions: list[int], vectors: np.ndarray) -> None:
        with self.lock:
            for node_id in ids:
                self._forget(node_id)
            first = len(self.ids)
            self.index.add(vectors)
            self.ids.extend(ids)
            self.versions.extend(versions)
            needed = (len(self.ids) + 7) // 8
            if needed > len(self._live):
                grown = np.zeros(max(needed, 2 * len(self._live)), dtype=np.uint8)
                grown[: len(self._live)] = self._live
                self._live = grown
            for offset, node_id in enumerate(ids):
                label = first + offset
                self.label_of[node_id] = label
                self._live[label >> 3] |= 1 << (label & 7)

    def remove(self, node_id: str) -> None:
        with self.lock:
            self._forget(node_id)

    def _forget(self, node_id: str) -> None:
        label = self.label_of.pop(node_id, None)
        if label is not None:
            self.ids[label] = None
            self._live[label >> 3] &= ~(1 << (label & 7)) & 0xFF

    def version_of(self, node_id: str) -> int | None:
        label = self.label_of.get(node_id)
        return self.versions[label] if label is not None else None

    # -------------------------------------------------------------- search
    def _selector_params(self, exact: bool, ef_search: int | None):
        if self.params.index_type == "HNSW" and not exact:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(ef_search or self.ef_search, 1)
        else:
            params = faiss.SearchParameters()
        selector = None
        if len(self.label_of) < len(self.ids):  # stale vectors to skip (a filter costs time)
            selector = faiss.IDSelectorBitmap(len(self._live), faiss.swig_ptr(self._live))
            params.sel = selector
        return params, selector

    def search(
        self, vector: np.ndarray, k: int, *, exact: bool = False, ef_search: int | None = None
    ) -> list[tuple[str, float, int]]:
        """Up to k live (node id, cosine similarity, version), best first."""
        with self.lock:
            if not self.label_of:
                return []
            params, _selector = self._selector_params(exact, ef_search)
            target = self.index
            if exact and self.params.index_type == "HNSW":
                target = faiss.downcast_index(self.index.storage)
            scores, labels = target.search(vector.reshape(1, -1), k, params=params)
            ids, versions = self.ids, self.versions
            # plain Python numbers: indexing and comparing numpy scalars costs more
            # than the rest of this loop
            return [
                (ids[label], score, versions[label])
                for score, label in zip(scores[0].tolist(), labels[0].tolist(), strict=True)
                if label >= 0 and ids[label] is not None
            ]

    # --------------------------------------------------------------- stats
    def stats(self) -> dict:
        total = len(self.ids)
        live = len(self.label_of)
        return {
            **asdict(self.params),
            "efSearch": self.ef_search,
            "metric": "cosine",
            "vectors_total": total,
            "vectors_live": live,
            "vectors_stale": total - live,
            "stale_ratio": round((total - live) / total, 4) if total else 0.0,
            "indexed_seq": self.seq,
        }

    # --------------------------------------------------------- persistence
    def write(self, path: str | Path) -> None:
        """Write to path and fsync; the caller renames it into place, so a crash
        leaves the old file.

        Searches may go on meanwhile; the caller makes sure nothing is added
        (the indexer holds its pause lock).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = orjson.dumps(
            {
                "params": asdict(self.params),
                "efSearch": self.ef_search,
                "seq": self.seq,
                "ids": self.ids,
                "versions": self.versions,
            }
        )
        blob = faiss.serialize_index(self.index)
        with open(path, "wb") as handle:
            handle.write(_MAGIC + _LENGTH.pack(len(meta)) + meta)
            blob.tofile(handle)
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        with open(path, "rb") as handle:
            if handle.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not a CodeGraph vector index")
            (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
            meta = orjson.loads(handle.read(length))
            loaded = cls(IndexParams(**meta["params"]))
            # FAISS reads the rest of the file itself: about 4x faster than
            # faiss.deserialize_index on a copy of it in memory, and no such copy.
            loaded.index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
        loaded.ef_search = meta["efSearch"]
        loaded.ids = meta["ids"]
        loaded.versions = meta["versions"]
        loaded.seq = meta["seq"]
        live = np.fromiter(
            (node_id is not None for node_id in loaded.ids), dtype=bool, count=len(loaded.ids)
        )
        packed = np.packbits(live, bitorder="little")
        loaded._live = np.zeros(max(1024, len(packed)), dtype=np.uint8)
        loaded._live[: len(packed)] = packed
        loaded.label_of = {
            node_id: label for label, node_id in enumerate(loaded.ids) if node_id is not None
        }
        return loaded
