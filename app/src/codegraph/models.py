"""The HTTP API's request bodies, and so what a log entry may hold: a host holds each
entry it applies to the same models (replication.entries), so an entry no request could
have made is refused alike on every host. A change that accepts more than before is a
new entry format (replication.entries.FORMAT): a host of the older release would refuse
what the newer one publishes."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from codegraph.store.graph import EDGE_TYPES
from codegraph.vector.embed import embedding_problem

_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
NodeId = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_PRINTABLE)]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_PRINTABLE)]
EdgeType = Literal[EDGE_TYPES]  # contains, imports, calls, inherits
QualifiedName = Annotated[str, StringConstraints(max_length=2048, pattern=_PRINTABLE)]
SourcePath = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=_PRINTABLE)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_+#-]{0,31}$")]
Line = Annotated[int, Field(ge=1)]
Text = Annotated[str, StringConstraints(max_length=1_048_576)]
Docstring = Annotated[str, StringConstraints(max_length=65_536)]
MAX_ATTRIBUTE_DEPTH = 32  # nesting of a node's attributes; JSON writers stop near 255


def _storable_embedding(values: list[float]) -> list[float]:
    problem = embedding_problem(values)
    if problem:
        raise ValueError(problem)
    return values


def _shallow_attributes(value: Any) -> Any:
    """Refuse deep nesting before it is validated (and recursed into) value by value."""
    level, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_ATTRIBUTE_DEPTH:
            raise ValueError(f"attributes are nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return value


Embedding = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(min_length=1, max_length=4096),
    AfterValidator(_storable_embedding),
]
Attributes = Annotated[dict[str, JsonValue], BeforeValidator(_shallow_attributes)]
# The node-route suffixes: an id must not end with one, or its URL would be ambiguous.
_RESERVED_SUFFIXES = ("/edges", "/neighbors")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_reserved_suffix(value: str) -> str:
    if value.endswith(_RESERVED_SUFFIXES):
        raise ValueError("a node id must not end with /edges or /neighbors")
    return value


WritableId = Annotated[NodeId, AfterValidator(_no_reserved_suffix)]


# The bulk-write bodies are TypedDicts: validated as strictly as models, but they
# arrive as plain dicts, with no per-node model to build and dump again (this is
# the ingest hot path: thousands of nodes per request).
@with_config(ConfigDict(extra="forbid"))
class NodeIn(TypedDict):
    id: WritableId
    kind: Kind
    name: Name
    qualified_name: NotRequired[QualifiedName | None]
    path: NotRequired[SourcePath | None]
    language: NotRequired[Language | None]
    start_line: NotRequired[Line | None]
    end_line: NotRequired[Line | None]
    text: NotRequired[Text | None]
    docstring: NotRequired[Docstring | None]
    attributes: NotRequired[Attributes]
    embedding: NotRequired[Embedding | None]


class NodePatch(_Body):
    kind: Kind | None = None
    name: Name | None = None
    qualified_name: QualifiedName | None = None
    path: SourcePath | None = None
    language: Language | None = None
    start_line: Line | None = None
    end_line: Line | None = None
    text: Text | None = None
    docstring: Docstring | None = None
    attributes: Attributes | None = None
    embedding: Embedding | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> NodePatch:
        for name in ("kind", "name"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be cleared")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (null clears an optional field)."""
        return self.model_dump(exclude_unset=True)


class EdgeRef(_Body):
    source: NodeId
    target: NodeId
    type: EdgeType


@with_config(ConfigDict(extra="forbid"))
class EdgeIn(TypedDict):
    source: NodeId
    target: NodeId
    type: EdgeType
    attributes: NotRequired[Attributes]


@with_config(ConfigDict(extra="forbid"))
class UpsertRequest(TypedDict):
    nodes: NotRequired[list[NodeIn]]
    edges: NotRequired[list[EdgeIn]]


class EdgesRequest(_Body):
    edges: list[EdgeIn] = Field(min_length=1)


class EdgeDeleteRequest(_Body):
    edges: list[EdgeRef] = Field(min_length=1)


class SearchRequest(_Body):
    q: Annotated[str, StringConstraints(max_length=4096)] | None = None
    mode: Literal["text", "vector", "hybrid"] = "hybrid"
    k: Annotated[int, Field(ge=1, le=1000)] = 10
    kind: Kind | None = None
    embedding: Embedding | None = None
    ef_search: Annotated[int, Field(ge=1, le=4096)] | None = None


class SourceFile(_Body):
    path: SourcePath
    content: Annotated[str, StringConstraints(max_length=4_194_304)]
    language: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="Taken from the file extension when absent."
    )


class ParseRequest(_Body):
    files: list[SourceFile] = Field(min_length=1, max_length=1000)
    store: bool = Field(True, description="Store the nodes and edges (atomically) as well.")


class RebuildParameters(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    M: Annotated[int, Field(ge=4, le=128)] | None = None
    efConstruction: Annotated[int, Field(ge=8, le=4096)] | None = None
    efSearch: Annotated[int, Field(ge=1, le=4096)] | None = None


class RebuildRequest(_Body):
    index_type: Literal["HNSW", "FLAT"] = "HNSW"
    parameters: RebuildParameters = Field(default_factory=RebuildParameters)


class RestoreRequest(_Body):
    backup_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PointInTimeRequest(_Body):
    recovery_time: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="'YYYY-MM-DD HH:MM:SS' in the server's time zone, or ISO 8601 with an offset",
        examples=["2026-11-26 08:00:00"],
    )


class AutoTuneRequest(_Body):
    target_recall: Annotated[float, Field(gt=0, le=1)] = 0.95
    apply: bool = True


class PrepareRequest(_Body):
    backup_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    recovery_time: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="as for POST /recovery/point-in-time"
    )


class PauseRequest(_Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]


class EntryFormatRequest(_Body):
    # a host sets only a format its own release reads (checked by the endpoint: 422)
    version: Annotated[int, Field(ge=1, strict=True)]


class AdoptRequest(_Body):
    backup_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
