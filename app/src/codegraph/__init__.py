"""CodeGraph: a code-graph store on RocksDB with FAISS similarity search."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codegraph")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"
