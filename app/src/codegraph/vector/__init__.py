"""Similarity search: deterministic embeddings, the FAISS index, its background indexer."""
