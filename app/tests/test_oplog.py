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


def test_opening_reads_only_the_tail_of_a_large_segment(tmp_path, monkeypatch):
    from codegraph.store import oplog

    log = OpLog(tmp_path, retention_days=35, sync=False)
    stamp = time.time()
    payload = "x" * 1000
    for i in range(12_000):  # about 12 MB in one segment: a dozen index hints
        log.append(stamp, {"op": "x", "i": i, "pad": payload})
    log.close()
    assert len(oplog._SparseIndex(log.segments()[-1]).entries) >= 10

    scanned = []
    real_records = oplog._records

    def counting(handle, offset=0):
        for found in real_records(handle, offset):
            scanned.append(found[0].lsn)
            yield found

    monkeypatch.setattr(oplog, "_records", counting)
    reopened = OpLog(tmp_path, retention_days=35, sync=False)
    assert reopened.last_lsn == 12_000
    assert len(scanned) < 1_500  # the first record, then about one megabyte of the tail
    scanned.clear()
    assert [e.mutation["i"] for e in reopened.read(11_990)] == list(range(11_990, 12_000))
    assert len(scanned) < 1_500  # read() seeks too


def test_a_segment_without_index_is_indexed_once_and_a_bad_hint_is_ignored(tmp_path):
    log = OpLog(tmp_path, retention_days=35, sync=False)
    stamp = time.time()
    for i in range(3_000):
        log.append(stamp, {"op": "x", "i": i, "pad": "y" * 1000})
    log.close()
    segment = log.segments()[-1]
    hints = segment.with_suffix(".idx")
    hints.unlink()  # as written by an older version
    assert OpLog(tmp_path, retention_days=35, sync=False).last_lsn == 3_000
    assert hints.stat().st_size > 0
    hints.write_bytes(hints.read_bytes()[:-16] + (2_999).to_bytes(8, "little") * 2)  # lies
    reopened = OpLog(tmp_path, retention_days=35, sync=False)
    assert reopened.last_lsn == 3_000
    assert [e.mutation["i"] for e in reopened.read(2_995)] == [2_995, 2_996, 2_997, 2_998, 2_999]
