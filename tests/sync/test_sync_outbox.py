"""The report outbox: a sequence that is never reused (restarts, kill -9), acknowledgement
trims, and a bound past which one signed gap record names what was dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from appliance.errors import BadRequest
from appliance.sync.identity import load_identity
from appliance.sync.outbox import GAP, Outbox, verify_gap


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "var"


def test_sequence_continues_after_reopen(data_dir):
    with Outbox(data_dir) as outbox:
        assert [outbox.append("report", {"n": i}) for i in range(3)] == [1, 2, 3]
        outbox.ack(3)
    with Outbox(data_dir) as outbox:
        assert outbox.append("report", {"n": 3}) == 4
        assert [e.seq for e in outbox.pending()] == [4]


def test_committed_entries_survive_sigkill_and_the_sequence_continues(data_dir):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from appliance.sync.outbox import Outbox
        outbox = Outbox(Path({str(data_dir)!r}))
        while True:
            seq = outbox.append("report", {{"payload": "x" * 200}})
            print(seq, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            text=True)
    printed = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(printed) < 50 and time.monotonic() < deadline:
        printed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)  # mid-append, most likely
    proc.wait()
    proc.stdout.close()
    assert len(printed) == 50
    with Outbox(data_dir) as outbox:
        kept = {e.seq for e in outbox.pending(100_000)}
        last = outbox.status().last_seq
        assert set(printed) <= kept  # every number handed out was committed
        assert kept == set(range(1, last + 1))  # and nothing in between is missing
        assert outbox.append("report", {"after": "restart"}) == last + 1


def test_ack_removes_everything_up_to_the_sequence(data_dir):
    with Outbox(data_dir) as outbox:
        for i in range(5):
            outbox.append("report", {"n": i})
        assert outbox.ack(3) == 3
        assert [e.seq for e in outbox.pending()] == [4, 5]
        status = outbox.status()
        assert (status.depth, status.acked, status.last_seq) == (2, 3, 5)
        assert outbox.ack(2) == 0  # an older ack changes nothing
        assert outbox.status().acked == 3


def test_an_ack_past_the_last_sequence_is_clamped(data_dir):
    with Outbox(data_dir) as outbox:
        outbox.append("report", {})
        outbox.ack(99)
        assert outbox.status().acked == 1
        assert outbox.append("report", {}) == 2


def test_overflow_drops_the_oldest_and_one_signed_gap_names_the_range(data_dir):
    identity = load_identity(data_dir)
    with Outbox(data_dir, max_rows=10, identity=identity) as outbox:
        for i in range(11):
            outbox.append("report", {"n": i})
        entries = outbox.pending(100)
        gaps = [e for e in entries if e.kind == GAP]
        assert len(gaps) == 1
        gap = gaps[0]
        assert entries[0] is not None and entries[0].kind == GAP  # sent first
        kept = sorted(e.seq for e in entries if e.kind != GAP)
        assert gap.body["first"] == 1 and gap.body["last"] == kept[0] - 1
        assert gap.body["count"] == gap.body["last"] - gap.body["first"] + 1
        assert gap.seq == gap.body["seq"] == 12 and gap.body["reason"] == "outbox-full"
        assert len(entries) <= 10
        assert verify_gap(gap.body, identity.signing_public)
        tampered = {**gap.body, "last": gap.body["last"] + 1}
        assert not verify_gap(tampered, identity.signing_public)
        status = outbox.status()
        assert status.gaps_total == 1 and status.dropped_total == gap.body["count"]


def test_every_dropped_sequence_is_covered_by_a_gap_after_many_overflows(data_dir):
    identity = load_identity(data_dir)
    with Outbox(data_dir, max_rows=10, identity=identity) as outbox:
        for i in range(200):
            outbox.append("report", {"n": i})
        entries = outbox.pending(100)
        last = outbox.status().last_seq
        covered = set()
        for entry in entries:
            covered.add(entry.seq)
            if entry.kind == GAP:
                assert verify_gap(entry.body, identity.signing_public)
                covered |= set(range(entry.body["first"], entry.body["last"] + 1))
        assert covered == set(range(1, last + 1))
        assert outbox.status().dropped_total == 200 - sum(e.kind != GAP for e in entries)


def test_the_byte_bound_drops_too(data_dir):
    with Outbox(data_dir, max_rows=1000, max_bytes=8192,
                identity=lambda: load_identity(data_dir)) as outbox:
        for _ in range(20):
            outbox.append("report", {"pad": "x" * 1000})
        status = outbox.status()
        assert status.bytes <= 8192 and status.pending_gaps >= 1


def test_an_entry_over_a_quarter_of_the_bound_is_refused(data_dir):
    with Outbox(data_dir, max_bytes=8192) as outbox, pytest.raises(BadRequest,
                                                                   match="outbox_max_bytes"):
        outbox.append("report", {"pad": "x" * 3000})


def test_drop_replaces_one_entry_by_a_gap_naming_it(data_dir):
    identity = load_identity(data_dir)
    with Outbox(data_dir, identity=identity) as outbox:
        for i in range(3):
            outbox.append("report", {"n": i})
        gap_seq = outbox.drop(2, reason="hub-refused-too-large")
        entries = outbox.pending()
        assert [e.seq for e in entries] == [gap_seq, 1, 3]
        assert entries[0].body["first"] == entries[0].body["last"] == 2
        assert verify_gap(entries[0].body, identity.signing_public)


def test_the_outbox_file_is_private(data_dir):
    with Outbox(data_dir):
        pass
    assert oct((data_dir / "sync" / "outbox.db").stat().st_mode & 0o777) == "0o600"
    assert oct((data_dir / "sync").stat().st_mode & 0o777) == "0o700"
