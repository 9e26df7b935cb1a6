"""Where writes go, and how a host follows them.

Every write is an entry of one ordered log; a host applies the log's entries in order
and a write is answered once the answering host has applied its entry. The log is the
local operation log on a single host (`local.LocalLog`), or a NATS JetStream stream
shared by the fleet (`jetstream.JetStreamLog`): one write path, two logs, one apply path
below both (`applier.Applier`: validation at apply time, resolve, the entry's batch, the
operation log's copy; `entries` judges what an entry is). `applied.Applied` is a host's
position in the log. Nothing here imports the engine or the procedures above it
(tests/test_layers.py).
"""
