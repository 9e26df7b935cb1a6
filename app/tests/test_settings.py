"""Configuration: defaults, the runbook's profiles, overrides, and errors naming the key."""

from pathlib import Path

import pytest

from codegraph.cli import admin
from codegraph.settings import BALANCED, ConfigError, GiB, MiB, load_settings, parse_settings


def test_defaults_match_the_runbook_host_layout():
    settings = parse_settings({})
    assert settings.server.port == 8080 and settings.server.metrics_port == 9090
    assert settings.auth.keys_file == "/opt/codegraph/config/.env"
    assert settings.database.path == "/opt/codegraph/data/rocksdb"
    assert settings.database.profile == "balanced"
    assert settings.database.sync_writes is True
    assert (
        settings.vector.dimension,
        settings.vector.M,
        settings.vector.efConstruction,
        settings.vector.efSearch,
        settings.vector.index_type,
    ) == (256, 16, 200, 100, "HNSW")
    assert settings.backup.dir == "/opt/codegraph/backups" and settings.backup.keep == 30
    assert (
        settings.oplog.path == "/opt/codegraph/data/oplog" and settings.oplog.retention_days == 35
    )


def test_read_heavy_carries_exactly_the_runbook_values():
    tuning = parse_settings({"database": {"profile": "read_heavy"}}).database.tuning()
    assert tuning["block_cache_size"] == 4294967296
    assert tuning["cache_index_and_filter_blocks"] is True
    assert tuning["pin_l0_filter_and_index_blocks_in_cache"] is True
    assert tuning["pin_top_level_index_and_filter"] is True
    assert tuning["optimize_filters_for_memory"] is True
    assert tuning["bloom_locality"] == 1
    assert tuning["level0_file_num_compaction_trigger"] == 4
    assert tuning["max_bytes_for_level_base"] == 1073741824
    assert tuning["target_file_size_base"] == 134217728


def test_write_heavy_carries_exactly_the_runbook_values():
    tuning = parse_settings({"database": {"profile": "write_heavy"}}).database.tuning()
    assert tuning["write_buffer_size"] == 268435456
    assert tuning["max_write_buffer_number"] == 6
    assert tuning["min_write_buffer_number_to_merge"] == 2
    assert tuning["max_background_jobs"] == 8
    assert tuning["level0_file_num_compaction_trigger"] == 8
    assert tuning["level0_slowdown_writes_trigger"] == 16
    assert tuning["level0_stop_writes_trigger"] == 24
    assert tuning["compression_per_level"] == ["none", "none", "lz4", "lz4", "zstd", "zstd"]
    # keys the write-heavy table does not name keep the balanced value
    assert tuning["block_cache_size"] == BALANCED["block_cache_size"]


def test_overrides_win_over_the_profile():
    tuning = parse_settings(
        {"database": {"profile": "read_heavy", "block_cache_size": 64 * MiB, "bloom_locality": 0}}
    ).database.tuning()
    assert tuning["block_cache_size"] == 64 * MiB
    assert tuning["bloom_locality"] == 0
    assert tuning["max_bytes_for_level_base"] == 1 * GiB  # untouched profile value


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"database": {"profile": "fast"}}, "database.profile"),
        ({"database": {"block_cache_sise": 1}}, "database.block_cache_sise: unknown key"),
        ({"server": {"port": "8080"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"vector": {"dimension": 1}}, "vector.dimension"),
        ({"vector": {"index_type": "IVF"}}, "vector.index_type"),
        ({"database": {"compression_per_level": ["lz5"]}}, "database.compression_per_level.0"),
        ({"server": {"tls_cert": "/x.crt"}}, "tls_key must be set together"),
        ({"server": {"port": 9090}}, "server.port and server.metrics_port must differ"),
        (
            {"database": {"optimize_filters_for_memory": False}},
            "database.optimize_filters_for_memory",
        ),
        ({"database": {"level0_stop_writes_trigger": 2}}, "database.level0_*"),
        ({"nonsense": {}}, "nonsense: unknown key"),
    ],
)
def test_bad_configuration_is_an_error_naming_the_key(config, named):
    with pytest.raises(ConfigError) as error:
        parse_settings(config)
    assert named in str(error.value)


def test_load_settings_reports_missing_file_and_bad_toml(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_admin_check_config_exit_codes(tmp_path: Path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[database]\nprofile = "write_heavy"\n')
    assert admin.main(["check-config", str(good)]) == 0
    assert "profile write_heavy" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nprofile = "turbo"\n')
    assert admin.main(["check-config", str(bad)]) == 2
    assert "database.profile" in capsys.readouterr().err
