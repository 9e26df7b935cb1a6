"""The repository's own tests; tests/unit runs under ansible-test (test_collection.py)."""

collect_ignore = ["unit"]
