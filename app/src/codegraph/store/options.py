"""Turn a tuning profile (settings.DatabaseSettings.tuning()) into RocksDB options."""

from __future__ import annotations

from typing import Any

import rocksdict

# What the rest of the service may use (tests/test_layers.py holds it to this).
__all__ = ["build_options"]

_COMPRESSION = {
    "none": rocksdict.DBCompressionType.none,
    "snappy": rocksdict.DBCompressionType.snappy,
    "lz4": rocksdict.DBCompressionType.lz4,
    "lz4hc": rocksdict.DBCompressionType.lz4hc,
    "zstd": rocksdict.DBCompressionType.zstd,
    "zlib": rocksdict.DBCompressionType.zlib,
    "bz2": rocksdict.DBCompressionType.bz2,
}


def build_options(
    tuning: dict[str, Any], *, max_log_file_size: int, keep_log_file_num: int
) -> rocksdict.Options:
    """One Options object shared by every column family, so they share the block cache."""
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(tuning["block_cache_size"]))
    table.set_cache_index_and_filter_blocks(tuning["cache_index_and_filter_blocks"])
    table.set_pin_l0_filter_and_index_blocks_in_cache(
        tuning["pin_l0_filter_and_index_blocks_in_cache"]
    )
    table.set_pin_top_level_index_and_filter(tuning["pin_top_level_index_and_filter"])
    if tuning["bloom_bits_per_key"]:
        table.set_bloom_filter(tuning["bloom_bits_per_key"], False)
    # optimize_filters_for_memory: always on in RocksDB 9.8 (settings refuses false)

    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    options.set_block_based_table_factory(table)
    options.set_bloom_locality(tuning["bloom_locality"])
    options.set_level_zero_file_num_compaction_trigger(tuning["level0_file_num_compaction_trigger"])
    options.set_level_zero_slowdown_writes_trigger(tuning["level0_slowdown_writes_trigger"])
    options.set_level_zero_stop_writes_trigger(tuning["level0_stop_writes_trigger"])
    options.set_max_bytes_for_level_base(tuning["max_bytes_for_level_base"])
    options.set_target_file_size_base(tuning["target_file_size_base"])
    options.set_write_buffer_size(tuning["write_buffer_size"])
    options.set_max_write_buffer_number(tuning["max_write_buffer_number"])
    options.set_min_write_buffer_number_to_merge(tuning["min_write_buffer_number_to_merge"])
    options.set_max_background_jobs(tuning["max_background_jobs"])
    options.set_compression_per_level(
        [_COMPRESSION[name]() for name in tuning["compression_per_level"]]
    )
    options.set_max_log_file_size(max_log_file_size)
    options.set_keep_log_file_num(keep_log_file_num)
    options.enable_statistics()
    return options
