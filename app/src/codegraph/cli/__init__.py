"""Console scripts: codegraph-api (the service) and codegraph-admin (offline tasks)."""
