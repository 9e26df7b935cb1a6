"""The operation log: order, torn tails, day segments, retention."""

import os
import time

from codegraph.store.oplog import OpLog


def test_append_and_read_in_order(tmp_path):
    log = OpLog(tmp_path, retention_days=35, sync=True)
    lsns = [log.append(1_000_000 + i, {"op": "x", "i": i}) for i in range(5)]
    assert lsns == [1, 2, 3, 4, 5]
    assert [e.mutation["i"] for e in log.read(2)] == [2, 3, 4]
    log.close()
    reopened = OpLog(tmp_path, retention_days=35, sync=True)
    assert reopened.last_lsn == 5
    assert reopened.append(1_000_010, {"op": "x", "i": 5}) == 6


def test_a_torn_tail_is_cut_off(tmp_path):
    log = OpLog(tmp_path, retention_days=35, sync=False)
    for i in range(3):
        log.append(1_000_000 + i, {"op": "x", "i": i})
    log.close()
    segment = log.segments()[-1]
    with open(segment, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00garbage")  # a crash mid-append
    reopened = OpLog(tmp_path, retention_days=35, sync=False)
    assert reopened.last_lsn == 3
    reopened.append(1_000_003, {"op": "x", "i": 3})
    assert [e.mutation["i"] for e in reopened.read(0)] == [0, 1, 2, 3]


def test_one_segment_per_day_and_retention(tmp_path):
    log = OpLog(tmp_path, retention_days=3, sync=False)
    day = 86400
    start = time.time() - 5 * day
    for offset in range(5):
        log.append(start + offset * day, {"op": "x", "day": offset})
    segments = log.segments()
    assert len(segments) == 5
    for index, segment in enumerate(segments):  # last written an hour after each record
        os.utime(segment, (start + index * day + 3600, start + index * day + 3600))
    removed = log.prune()
    assert len(removed) == 2  # last written 5 and 4 days ago (minus the hour): past 3 days
    assert log.first_lsn() == 3
    assert [e.mutation["day"] for e in log.read(0)] == [2, 3, 4]
