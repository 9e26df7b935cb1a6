"""Identifier-aware tokenizing, shared by the name index and the embedding."""

from __future__ import annotations

import re

# Splits "parseHTTPRequest_v2.foo" into parse, http, request, v2, foo.
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")


def identifier_tokens(text: str) -> list[str]:
    """Lower-cased sub-words of an identifier or free text, in order."""
    return [token.lower() for token in _TOKEN.findall(text)]


def name_keys(name: str, qualified_name: str | None) -> set[str]:
    """What the name index stores for a node: its name, the name's sub-words, and the
    whole qualified name (found by prefix: "pkg.mod" finds everything under it).
    Sub-words of the qualified name's packages are not indexed: they would multiply
    the entries of every node by its depth for little search value."""
    keys = {name.lower(), *identifier_tokens(name)}
    if qualified_name:
        keys.add(qualified_name.lower())
    keys.discard("")
    return keys
