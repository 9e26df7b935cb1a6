"""Storage: RocksDB column families, the operation log and backups."""
