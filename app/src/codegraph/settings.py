"""Configuration: one typed object loaded once from the TOML file.

Nothing else in the service reads the configuration file. Unknown keys, wrong
types and unknown profile names are errors that name the offending key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

Compression = Literal["none", "snappy", "lz4", "lz4hc", "zstd", "zlib", "bz2"]
ProfileName = Literal["read_heavy", "write_heavy", "balanced"]

# The baseline every profile starts from: close to RocksDB's own defaults,
# sized for a host that also runs the vector index.
BALANCED: dict[str, Any] = {
    "block_cache_size": 512 * MiB,
    "cache_index_and_filter_blocks": False,
    "pin_l0_filter_and_index_blocks_in_cache": False,
    "pin_top_level_index_and_filter": True,
    "optimize_filters_for_memory": True,
    "bloom_locality": 0,
    "bloom_bits_per_key": 10,
    "level0_file_num_compaction_trigger": 4,
    "max_bytes_for_level_base": 256 * MiB,
    "target_file_size_base": 64 * MiB,
    "write_buffer_size": 64 * MiB,
    "max_write_buffer_number": 2,
    "min_write_buffer_number_to_merge": 1,
    "max_background_jobs": 2,
    "level0_slowdown_writes_trigger": 20,
    "level0_stop_writes_trigger": 36,
    "compression_per_level": ["none", "lz4", "lz4", "lz4", "lz4", "zstd", "zstd"],
}

# Exactly the runbook's "Performance Tuning" tables; keys a table does not
# name keep the balanced value.
PROFILES: dict[str, dict[str, Any]] = {
    "balanced": {},
    "read_heavy": {
        "block_cache_size": 4 * GiB,
        "cache_index_and_filter_blocks": True,
        "pin_l0_filter_and_index_blocks_in_cache": True,
        "pin_top_level_index_and_filter": True,
        "optimize_filters_for_memory": True,
        "bloom_locality": 1,
        "level0_file_num_compaction_trigger": 4,
        "max_bytes_for_level_base": 1 * GiB,
        "target_file_size_base": 128 * MiB,
    },
    "write_heavy": {
        "write_buffer_size": 256 * MiB,
        "max_write_buffer_number": 6,
        "min_write_buffer_number_to_merge": 2,
        "max_background_jobs": 8,
        "level0_file_num_compaction_trigger": 8,
        "level0_slowdown_writes_trigger": 16,
        "level0_stop_writes_trigger": 24,
        "compression_per_level": ["none", "none", "lz4", "lz4", "zstd", "zstd"],
    },
}


class ConfigError(Exception):
    """The configuration is unusable; the message names the key."""


class _Section(BaseModel):
    # strict: a TOML string "8080" is not silently taken as the number 8080
    model_config = ConfigDict(extra="forbid", strict=True)


class ServerSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    metrics_port: int = Field(9090, ge=1, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    log_file: str = ""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    access_log: bool = False
    max_request_bytes: int = Field(64 * MiB, ge=1024)
    # JSON values (numbers, strings, objects, ...) one request body may hold: counted
    # before the body is parsed, so a small body cannot become gigabytes of objects.
    max_request_values: int = Field(4_000_000, ge=1000)
    max_batch_nodes: int = Field(10_000, ge=1)
    max_batch_edges: int = Field(100_000, ge=1)
    # What a client may send before it is answered (see codegraph.api.server).
    max_header_bytes: int = Field(32 * KiB, ge=1 * KiB, le=1 * MiB)
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    tls_timeout_seconds: float = Field(10.0, gt=0, le=300)
    keepalive_timeout_seconds: int = Field(5, ge=1, le=3600)
    # POST /parse runs in a separate process, limited in time and memory.
    parse_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    parse_memory_bytes: int = Field(1 * GiB, ge=128 * MiB)
    max_parse_bytes: int = Field(16 * MiB, ge=1 * KiB)

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if self.port == self.metrics_port:
            raise ValueError("server.port and server.metrics_port must differ")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("server.tls_cert and server.tls_key must be set together")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


class AuthSettings(_Section):
    keys_file: str = "/opt/codegraph/config/.env"


class DatabaseSettings(_Section):
    path: str = "/opt/codegraph/data/rocksdb"
    profile: ProfileName = "balanced"
    # true: every acknowledged write is fsync'ed (survives power loss);
    # false: survives a process crash (kill -9) but not a host crash.
    sync_writes: bool = True
    # RocksDB's own info LOG: rolled by size, a bounded number kept.
    max_log_file_size: int = Field(64 * MiB, ge=0)
    keep_log_file_num: int = Field(5, ge=1)
    # Per-key overrides of the profile; None means "the profile's value".
    block_cache_size: int | None = Field(None, ge=0)
    cache_index_and_filter_blocks: bool | None = None
    pin_l0_filter_and_index_blocks_in_cache: bool | None = None
    pin_top_level_index_and_filter: bool | None = None
    optimize_filters_for_memory: bool | None = None
    bloom_locality: int | None = Field(None, ge=0)
    bloom_bits_per_key: int | None = Field(None, ge=0, le=64)
    level0_file_num_compaction_trigger: int | None = Field(None, ge=1)
    max_bytes_for_level_base: int | None = Field(None, ge=MiB)
    target_file_size_base: int | None = Field(None, ge=MiB)
    write_buffer_size: int | None = Field(None, ge=MiB)
    max_write_buffer_number: int | None = Field(None, ge=1)
    min_write_buffer_number_to_merge: int | None = Field(None, ge=1)
    max_background_jobs: int | None = Field(None, ge=1)
    level0_slowdown_writes_trigger: int | None = Field(None, ge=1)
    level0_stop_writes_trigger: int | None = Field(None, ge=1)
    compression_per_level: list[Compression] | None = Field(None, min_length=1, max_length=7)

    @field_validator("optimize_filters_for_memory")
    @classmethod
    def _filters_for_memory(cls, value: bool | None) -> bool | None:
        # RocksDB 9.8 (the version rocksdict ships) has this on by default and
        # the binding offers no way to turn it off: refuse rather than ignore.
        if value is False:
            raise ValueError("false is not supported: RocksDB 9.8 always optimizes filters")
        return value

    def tuning(self) -> dict[str, Any]:
        """The RocksDB options in force: balanced, then the profile, then overrides."""
        merged = {**BALANCED, **PROFILES[self.profile]}
        for key in BALANCED:
            value = getattr(self, key)
            if value is not None:
                merged[key] = value
        if merged["max_write_buffer_number"] < merged["min_write_buffer_number_to_merge"]:
            raise ConfigError(
                "database.max_write_buffer_number must be >= min_write_buffer_number_to_merge"
            )
        if not (
            merged["level0_file_num_compaction_trigger"]
            <= merged["level0_slowdown_writes_trigger"]
            <= merged["level0_stop_writes_trigger"]
        ):
            raise ConfigError(
                "database.level0_*: need compaction_trigger <= slowdown_writes_trigger"
                " <= stop_writes_trigger"
            )
        return merged


class VectorSettings(_Section):
    path: str = "/opt/codegraph/data/vector"
    dimension: int = Field(256, ge=2, le=4096)
    index_type: Literal["HNSW", "FLAT"] = "HNSW"
    M: int = Field(16, ge=4, le=128)
    efConstruction: int = Field(200, ge=8, le=4096)
    efSearch: int = Field(100, ge=1, le=4096)


class BackupSettings(_Section):
    dir: str = "/opt/codegraph/backups"
    keep: int = Field(30, ge=1)


class OplogSettings(_Section):
    path: str = "/opt/codegraph/data/oplog"
    retention_days: int = Field(35, ge=1)


class ReplicationSettings(_Section):
    """Where writes go: the local operation log (one host), or a NATS JetStream stream
    every host of the fleet applies in order (codegraph.replication)."""

    mode: Literal["none", "jetstream"] = "none"
    # NATS client URLs, this host's own server first (it is preferred).
    servers: list[str] = Field(default_factory=list)
    user: str = "codegraph"  # its password is CODEGRAPH_NATS_PASSWORD in auth.keys_file
    # The stream's create and update (codegraph-admin stream): the NATS admin user, its
    # password CODEGRAPH_NATS_ADMIN_PASSWORD in a file only root reads.
    admin_user: str = "codegraph-admin"
    admin_keys_file: str = "/opt/codegraph/config/nats-admin.keys"
    ca_file: str = ""  # the CA the NATS servers' certificates chain to (tls:// URLs)
    stream: str = Field("CODEGRAPH", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field("codegraph.mutations", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    publish_timeout_seconds: float = Field(2.0, gt=0, le=60)
    apply_wait_seconds: float = Field(10.0, gt=0, le=600)  # a write waits for its own entry
    read_wait_seconds: float = Field(2.0, ge=0, le=60)  # X-CodeGraph-Min-Seq waits this long
    ready_max_lag: int = Field(100, ge=0)  # entries behind the stream and still ready

    @model_validator(mode="after")
    def _check(self) -> ReplicationSettings:
        if self.mode == "jetstream" and not self.servers:
            raise ValueError("replication.servers must list the NATS servers (mode jetstream)")
        return self


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    database: DatabaseSettings = DatabaseSettings()
    vector: VectorSettings = VectorSettings()
    backup: BackupSettings = BackupSettings()
    oplog: OplogSettings = OplogSettings()
    replication: ReplicationSettings = ReplicationSettings()

    @property
    def lock_path(self) -> Path:
        """The file whose lock marks the data directory as in use by one process."""
        return Path(self.database.path).with_name(Path(self.database.path).name + ".lock")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def parse_settings(data: dict[str, Any]) -> Settings:
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    settings.database.tuning()  # cross-key checks of the merged profile
    return settings


def load_settings(path: str | Path) -> Settings:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_settings(data)
