"""Host-aware collection: per-host cap, breaker, connect check, Retry-After, one budget, bad hosts.

Served by :class:`facelab.demo.hostweb.HostWeb` on loopback addresses 127.a.b.c only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import collect as C
from facelab.collect.fetch import CollectSettings, Outcome, make_session, retry_after_seconds
from facelab.collect.hosts import HOST_UNREACHABLE, HostScheduler, host_of
from facelab.demo.hostweb import (
    DEAD_KINDS,
    DEFAULT_DEAD,
    PROC_TCP,
    HostWeb,
    loopback_address,
    plan_hosts,
    scale_dead,
)

pytestmark = pytest.mark.network_local

QUICK = {"workers": 8, "timeout": 1.0, "connect_timeout": 0.5, "retries": 0, "backoff": 0.01,
         "progress": False, "verbose": False, "processes": 1}


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-shaped folder: photos.csv and 40 small distinct JPEGs of 4 people."""
    root = tmp_path_factory.mktemp("tiny-demo")
    rows = []
    for i in range(40):
        rng = np.random.default_rng(i)
        image = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(
            (160, 120), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        path = Path("photos") / f"p{i % 4}" / f"{i}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(buf.getvalue())
        rows.append({"person": f"Person {i % 4}", "imagenum": i // 4 + 1, "path": path.as_posix(),
                     "width": 160, "height": 120, "rect": "40,30,120,90", "n_faces": 1,
                     "md5": hashlib.md5(buf.getvalue()).hexdigest()})
    pd.DataFrame(rows).to_csv(root / "photos.csv", index=False)
    return root


def make_web(demo: Path, counts: dict[str, int], kinds: dict[str, str],
             rtt: float = 0.005) -> HostWeb:
    names = [name for name, n in counts.items() for _ in range(n)]
    hosts, row_host = plan_hosts(names, len(names), seed=0, kinds=kinds)
    for host in hosts:
        host.rtt = rtt
    return HostWeb(demo, hosts, row_host)


@pytest.fixture
def served(tiny_demo: Path, request: pytest.FixtureRequest) -> Iterator[HostWeb]:
    counts, kinds = request.param
    with make_web(tiny_demo, counts, kinds) as web:
        yield web


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- scheduler

def job(host: str, i: int) -> tuple[str, str]:
    url = f"http://{host}/{i}.jpg"
    return f"url:{url}", url


def test_scheduler_caps_hosts_and_serves_the_busiest_first() -> None:
    jobs = [job("small.example", i) for i in range(2)] + [job("big.example", i)
                                                          for i in range(6)]
    sched = HostScheduler(jobs, CollectSettings(per_host=2))
    taken = [sched.take() for _ in range(5)]
    hosts = [host_of(t[1]) if t else None for t in taken]
    # big first (most URLs left), at most 2 of a host at once, then nothing may go
    assert hosts == ["big.example", "big.example", "small.example", "small.example", None]
    sched.finish(Outcome(taken[0][0], "ok"))
    assert host_of(sched.take()[1]) == "big.example"


def test_breaker_ends_a_host_after_consecutive_failures_naming_them() -> None:
    jobs = [job("dead.example", i) for i in range(6)] + [job("up.example", 0)]
    sched = HostScheduler(jobs, CollectSettings(per_host=0, breaker=3))
    sent = [sched.take() for _ in range(3)]
    ended: list[Outcome] = []
    for kind, (key, _) in zip(("refused", "refused", "connect_timeout"), sent, strict=True):
        ended += sched.finish(Outcome(key, "connection_error", f"{kind} there",
                                      extra={"host_failure": kind}))
    unreachable = [o for o in ended if o.status == HOST_UNREACHABLE]
    assert len(unreachable) == 3 and sched.tripped == 1
    assert "3 consecutive failures (refused; connect_timeout" in unreachable[0].reason
    assert host_of(sched.take()[1]) == "up.example" and sched.take() is None


def test_read_timeouts_of_a_host_that_answered_do_not_trip_it() -> None:
    jobs = [job("slowish.example", i) for i in range(6)]
    sched = HostScheduler(jobs, CollectSettings(per_host=0, breaker=2))
    first = sched.take()
    sched.finish(Outcome(first[0], "http_error", "HTTP 404", extra={"http_status": 404}))
    for _ in range(3):
        key = sched.take()[0]
        assert len(sched.finish(Outcome(key, "timeout", "stalled",
                                        extra={"host_failure": "read_timeout"}))) == 1
    assert sched.tripped == 0 and sched.pending()


def test_retry_after_pauses_the_host_and_is_bounded() -> None:
    now = [100.0]
    jobs = [job("busy.example", 0), job("busy.example", 1)]
    settings = CollectSettings(per_host=0, retries=2, max_retry_after=30)
    sched = HostScheduler(jobs, settings, clock=lambda: now[0])
    a, b = sched.take(), sched.take()
    assert sched.finish(Outcome(a[0], "http_error", "HTTP 429", extra={
        "http_status": 429, "retry_after": 5.0})) == []          # put back, host paused
    assert sched.take() is None and sched.wait_hint() == pytest.approx(5.0)
    now[0] += 5.0
    assert sched.take()[0] == a[0]
    [final] = sched.finish(Outcome(a[0], "ok"))
    assert final.extra["retry_waits"] == 1 and sched.retry_waits == 1
    [refused] = sched.finish(Outcome(b[0], "http_error", "HTTP 429", extra={
        "http_status": 429, "retry_after": 3600.0}))
    assert "more than --max-retry-after 30 s: not waited" in refused.reason


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Thu, 01 Jan 2099 00:00:00 GMT", now=0.0) > 1e9


def test_floor_of_an_emulated_web(tiny_demo: Path) -> None:
    web = make_web(tiny_demo, {"big.example": 10, "one.example": 1, "hole.example": 2},
                   {"big.example": "ok", "one.example": "ok", "hole.example": "blackhole"},
                   rtt=0.1)
    floor = web.floor(2, connect_timeout=3.0, timeout=5.0, workers=4)
    assert floor["live"] == pytest.approx((10 + 2) * 0.1 / 2)
    assert floor["workers"] == pytest.approx(((10 + 2) + (1 + 1)) * 0.1 / 4)
    assert floor["dead"] == 3.0 == floor["floor"]


def test_loopback_addresses_only() -> None:
    addresses = {loopback_address(i) for i in range(0, 250 ** 3, 9973)}
    assert all(a.startswith("127.") for a in addresses)
    assert all(1 <= int(o) <= 250 for a in addresses for o in a.split(".")[1:])


# ----------------------------------------------------------------------------- over HTTP

DEAD_WEB = ({"up.example": 8, "refused.example": 4, "hole.example": 3, "quiet.example": 6,
             "err.example": 2, "limited.example": 3},
            {"up.example": "ok", "refused.example": "refused", "hole.example": "blackhole",
             "quiet.example": "silent", "err.example": "error5xx",
             "limited.example": "ratelimited"})


@pytest.mark.parametrize("served", [DEAD_WEB], indirect=True)
def test_dead_hosts_end_as_rows_without_waiting_out_each_timeout(served: HostWeb,
                                                                 tmp_path: Path) -> None:
    web = served
    source = web.write_list(tmp_path / "list.txt")
    started = time.monotonic()
    df = C.collect(source, tmp_path / "out", **{**QUICK, "retries": 1})
    took = time.monotonic() - started
    truth = web.truth()
    status = df.groupby(truth["kind"])["status"].agg(lambda s: sorted(set(s)))
    assert status["ok"] == ["ok"]
    assert status["ratelimited"] == ["ok"]                  # Retry-After honoured
    assert status["refused"] == ["host_unreachable"]
    assert status["blackhole"] == ["host_unreachable"]       # its first URL found it dead
    assert status["error5xx"] == ["http_error"]
    assert status["silent"] == ["host_unreachable"]          # connected, never answered
    reasons = df.loc[df["status"] == HOST_UNREACHABLE, "reason"]
    assert reasons.str.contains("unreachable").all()
    assert reasons.str.contains("connection refused").any()
    assert reasons.str.contains("connect timed out").any()
    assert reasons.str.contains("accepted the connection but sent no answer").any()
    # a dead host costs one URL's wait, its first (the connect check), whatever it holds:
    # of the 6 silent URLs one was sent (at most 2 attempts); ok, 5xx (a retry), 429 (a wait)
    [quiet] = [h.address for h in web.hosts if h.kind == "silent"]
    assert 1 <= web.connections[quiet] <= 2
    assert sum(web.hits.values()) == 8 + 2 * 2 + 3 * 2
    # no URL of a refused or black-hole host reached a server; 6 silent URLs x 2 attempts
    # x 1 s would be 12 s of waiting alone with cap 2
    assert took < 10
    hosts = pd.read_csv(tmp_path / "out" / "hosts.csv")
    assert hosts["dead"].sum() == 3 and hosts["timeout_seconds"].sum() > 0
    assert df.attrs["collect"]["retry_waits"] == 3
    assert sum(e.get("extra", {}).get("retry_waits", 0) for e in journal(tmp_path / "out")) == 3
    # a rerun keeps the host_unreachable rows; --retry-failed tries them again
    again = C.collect(source, tmp_path / "out", **QUICK)
    assert again.attrs["collect"]["fetched"] == 0
    assert again["status"].tolist() == df["status"].tolist()
    retried = C.collect(source, tmp_path / "out", retry_failed=True, **QUICK)
    assert retried.attrs["collect"]["fetched"] == int(df["status"].isin(C.TRANSIENT).sum())


@pytest.mark.parametrize("served", [DEAD_WEB], indirect=True)
def test_without_the_probe_the_breaker_ends_dead_hosts(served: HostWeb, tmp_path: Path) -> None:
    source = served.write_list(tmp_path / "list.txt")
    df = C.collect(source, tmp_path / "out", probe=False, **QUICK)
    kind = served.truth()["kind"]
    quiet = df.loc[kind == "silent", "status"]
    assert set(quiet) == {"timeout", HOST_UNREACHABLE} and (quiet == "timeout").sum() <= 4
    refused = df.loc[kind == "refused", "status"]
    assert set(refused) == {"connection_error", HOST_UNREACHABLE}
    reasons = df.loc[df["status"] == HOST_UNREACHABLE, "reason"]
    assert reasons.str.contains("3 consecutive failures").all()
    assert reasons.str.contains("read_timeout").any() and reasons.str.contains("refused").any()


@pytest.mark.parametrize("served", [({"one.example": 12}, {"one.example": "ok"})],
                         indirect=True)
@pytest.mark.parametrize("processes", [1, 2])
def test_per_host_cap_holds_at_the_server(served: HostWeb, tmp_path: Path,
                                          processes: int) -> None:
    web = served
    for host in web.hosts:
        host.rtt = 0.05
    source = web.write_list(tmp_path / "list.txt")
    df = C.collect(source, tmp_path / "out", **{**QUICK, "processes": processes, "per_host": 3})
    assert (df["status"] == "ok").all()
    assert max(web.peak.values()) <= 3
    web.peak.clear()
    C.collect(source, tmp_path / "all", **{**QUICK, "processes": processes, "per_host": 0})
    assert max(web.peak.values()) > 3                      # uncapped: every worker at once


# ----------------------------------------------------------------------------- one budget

# 60 URLs on hosts of every kind: far more waiting than 4 connections can hold at once
BUDGET_WEB = ({**{f"up{i}.example": 6 for i in range(4)},
               **{f"one{i}.example": 1 for i in range(10)},
               "hole.example": 3, "hole2.example": 1, "quiet.example": 3, "quiet2.example": 1,
               "refused.example": 2, "err.example": 3, "limited.example": 3,
               "big.example": 14},
              {**{f"up{i}.example": "ok" for i in range(4)},
               **{f"one{i}.example": "ok" for i in range(10)},
               "hole.example": "blackhole", "hole2.example": "blackhole",
               "quiet.example": "silent", "quiet2.example": "silent",
               "refused.example": "refused", "err.example": "error5xx",
               "limited.example": "ratelimited", "big.example": "ok"})


@pytest.mark.parametrize("served", [BUDGET_WEB], indirect=True)
@pytest.mark.parametrize("processes", [1, 2])
def test_connections_never_exceed_the_budget_nor_the_per_host_cap(
        served: HostWeb, tmp_path: Path, processes: int) -> None:
    """--workers bounds every connection open at once: downloads, hosts' checks, connects
    to black holes (counted from the kernel's socket table) and kept-alive idle ones; per
    host, at most the cap."""
    web = served
    web.sample_s = 0.01
    for host in web.hosts:
        host.rtt = 0.02
    source = web.write_list(tmp_path / "list.txt")
    web.reset_counts()
    df = C.collect(source, tmp_path / "out", **{**QUICK, "workers": 4, "per_host": 2,
                                                "processes": processes})
    peaks = web.connection_peaks()
    assert peaks["total"] <= 4 and peaks["accepted"] <= 4, peaks
    assert peaks["host"] <= 2, peaks
    assert peaks["total"] >= 3, peaks                  # the budget was used, not just kept
    if PROC_TCP.is_file():
        assert peaks["connecting"] >= 1, peaks         # black holes' connects were counted
    kind = web.truth()["kind"]
    assert set(df.loc[kind == "ok", "status"]) <= {"ok", "duplicate"}     # 60 URLs, 40 photos
    assert set(df.loc[kind.isin(["blackhole", "silent", "refused"]), "status"]) == {
        HOST_UNREACHABLE}


def test_a_full_budget_closes_the_idle_connection_used_longest_ago(tiny_demo: Path) -> None:
    names = {"a.example": 2, "b.example": 2, "c.example": 1}
    with make_web(tiny_demo, names, dict.fromkeys(names, "ok")) as web:
        a1, a2, b1, b2, c1 = web.truth()["url"]
        session = make_session(CollectSettings(retries=0), connections=2)
        budget = session.get_adapter("http://").budget

        def get(url: str) -> bytes:
            return session.get(url, timeout=5).content

        assert get(a1) and get(b1)
        assert web.connection_peaks() | {"host_name": ""} == {
            "total": 2, "host": 1, "host_name": "", "accepted": 2, "connecting": 0}
        assert get(c1)                  # full: a's idle connection is closed
        address = {h.name: h.address for h in web.hosts}
        deadline = time.monotonic() + 5
        while web.open[address["a.example"]] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert web.open[address["a.example"]] == 0 and web.open_total == 2
        assert get(b2)                  # b's connection was kept alive
        assert web.connections[address["b.example"]] == 1
        assert (budget.peak, budget.evicted, budget.overdrawn) == (2, 1, 0)
        assert get(a2)                  # a reconnects, closing c's (the oldest)
        assert web.connections[address["a.example"]] == 2 and budget.held == 2
        session.close()


def test_a_full_budget_keeps_the_connections_of_a_host_with_more_requests(
        tiny_demo: Path) -> None:
    """The idle connection closed for a new one is that of the host with the fewest
    requests (a one-URL host's), even when a busier host's was used longer ago."""
    names = {"busy.example": 3, "b.example": 1, "c.example": 1}
    with make_web(tiny_demo, names, dict.fromkeys(names, "ok")) as web:
        urls = web.truth()["url"]
        busy, b1, c1 = list(urls[:3]), urls[3], urls[4]
        session = make_session(CollectSettings(retries=0), connections=2)
        budget = session.get_adapter("http://").budget

        def get(url: str) -> bytes:
            return session.get(url, timeout=5).content

        assert get(busy[0]) and get(busy[1]) and get(b1)     # busy's is the oldest idle
        assert get(c1)                  # full: b's idle connection is closed, not busy's
        address = {h.name: h.address for h in web.hosts}
        deadline = time.monotonic() + 5
        while web.open[address["b.example"]] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert web.open[address["b.example"]] == 0
        assert get(busy[2])             # its kept-alive connection serves it
        assert web.connections[address["busy.example"]] == 1
        assert (budget.peak, budget.evicted, budget.overdrawn) == (2, 1, 0)
        session.close()


def test_the_dead_host_mix_scales_alone_and_nests() -> None:
    names = [f"h{i}.example" for i in range(4000)]
    hosts, _ = plan_hosts(names, len(names), seed=3)
    mixes = {k: scale_dead(hosts, k, seed=3) for k in (0, 0.5, 1, 2)}
    dead = {k: {h.name: h.kind for h in mix if h.kind in DEAD_KINDS} for k, mix in mixes.items()}
    assert not dead[0] and [h.kind for h in mixes[1]] == [h.kind for h in hosts]
    share = sum(DEFAULT_DEAD[k] for k in DEAD_KINDS)
    assert len(dead[2]) == pytest.approx(2 * share * len(hosts), rel=0.1)
    assert dead[0.5].items() <= dead[1].items() <= dead[2].items()      # same hosts, kinds
    for mix in mixes.values():                       # 5xx, 429 and round trips stay
        assert [(h.kind, h.rtt) for h in mix if h.kind in ("error5xx", "ratelimited")] == [
            (h.kind, h.rtt) for h in hosts if h.kind in ("error5xx", "ratelimited")]
    with pytest.raises(ValueError, match="between 0 and"):
        scale_dead(hosts, 4)


# ----------------------------------------------------------------------------- bad hosts

class _RawServer:
    """A socket server on 127.0.0.1 that answers each connection with ``answer(conn)``."""

    def __init__(self, answer) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.answer(conn)
        except OSError:
            pass
        finally:
            conn.close()


def endless_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for i in range(100_000):
        conn.sendall(f"X-Filler-{i}: {'a' * 50}\r\n".encode())


def test_bad_hosts_end_as_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endless = _RawServer(endless_headers)
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):           # no DNS query ever leaves the machine
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    rows = [("Ann", 1, "http://no-such-host.invalid/a.jpg"),
            ("Ann", 2, "http://no-such-host.invalid/b.jpg"),
            ("Bob", 1, f"http://127.0.0.1:{endless.port}/headers.jpg"),
            ("Bob", 2, "http://[::1/broken.jpg"),
            ("Cid", 1, f"http://[::1]:{_closed_port6()}/v6.jpg")]
    lines = ["# test", "#\tperson\timagenum\turl\trect\tmd5sum"]
    lines += [f"{p}\t{n}\t{u}\t1,1,9,9\t{'0' * 32}" for p, n, u in rows]
    source = tmp_path / "list.txt"
    source.write_text("\n".join(lines) + "\n")
    df = C.collect(source, tmp_path / "out", **QUICK)
    by = dict(zip(df["url"], zip(df["status"], df["reason"], strict=True), strict=True))
    assert by[rows[0][2]][0] == HOST_UNREACHABLE and "not resolved" in by[rows[0][2]][1]
    assert by[rows[2][2]][0] == "connection_error"            # got more than 100 headers
    assert by[rows[3][2]][0] == "unsupported_url"
    assert by[rows[4][2]][0] in (HOST_UNREACHABLE, "connection_error")
    endless.sock.close()


def _closed_port6() -> int:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return sock.getsockname()[1]
    except OSError:
        return 9      # no IPv6 here: the URL fails all the same


# ----------------------------------------------------------------------------- shards

# 51 URLs over 40 photos: the last 8 rows are copies of rows 3-10, on other hosts
SHARD_WEB = ({"gone.example": 3, **{f"h{i}.example": 6 for i in range(8)}},
             {"gone.example": "refused", **{f"h{i}.example": "ok" for i in range(8)}})


@pytest.mark.parametrize("served", [SHARD_WEB], indirect=True)
def test_shards_merge_into_the_single_run_manifest(served: HostWeb, tmp_path: Path) -> None:
    source = served.write_list(tmp_path / "list.txt")
    single = C.collect(source, tmp_path / "single", **QUICK)
    assert (single["status"] == "duplicate").sum() == 8
    shards = [tmp_path / f"shard{i}" for i in (1, 2, 3)]
    sizes = [len(C.collect(source, folder, shard=f"{i}/3", **QUICK))
             for i, folder in enumerate(shards, start=1)]
    assert sum(sizes) == len(single)          # by host (host:port, so the port decides), once
    hits = sum(served.hits.values())
    merged = C.merge([str(s) for s in reversed(shards)], tmp_path / "merged", verbose=False)
    pd.testing.assert_frame_equal(merged, single)
    assert sum(served.hits.values()) == hits                     # merge downloads nothing
    files = sorted(p.name for p in (tmp_path / "merged" / "images").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "single" / "images").iterdir())
    lines = (tmp_path / "merged" / "journal.jsonl").read_text().count("\n")
    C.merge([str(s) for s in shards], tmp_path / "merged", verbose=False)   # again: no-op
    assert (tmp_path / "merged" / "journal.jsonl").read_text().count("\n") == lines
    again = C.collect(source, tmp_path / "merged", **QUICK)      # a plain rerun finds all done
    assert again.attrs["collect"]["fetched"] == 0


@pytest.mark.parametrize("served", [SHARD_WEB], indirect=True)
def test_merge_refuses_what_does_not_fit(served: HostWeb, tmp_path: Path) -> None:
    source = served.write_list(tmp_path / "list.txt")
    for i in (1, 2):
        C.collect(source, tmp_path / f"s{i}", shard=f"{i}/2", **QUICK)
    other = tmp_path / "other.txt"
    other.write_text(source.read_text().replace("Person 0", "Someone Else"))
    C.collect(other, tmp_path / "o2", shard="2/2", **QUICK)
    with pytest.raises(ValueError, match="missing \\[2\\]"):
        C.merge([tmp_path / "s1"], tmp_path / "m")
    with pytest.raises(ValueError, match="another list"):
        C.merge([tmp_path / "s1", tmp_path / "o2"], tmp_path / "m")
    with pytest.raises(ValueError, match="not a shard folder"):
        C.merge([tmp_path / "s1", tmp_path], tmp_path / "m")
    with pytest.raises(ValueError, match="1 <= I <= N"):
        C.collect(source, tmp_path / "bad", shard="0/2", **QUICK)


def test_cli_has_shard_and_merge(capsys: pytest.CaptureFixture[str]) -> None:
    from facelab.cli import main

    for command, option in (("collect", "--shard"), ("merge", "--out"), ("collect", "--ray")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert option in capsys.readouterr().out


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for this module's Ray tests (starting one takes seconds)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0): "
                              "the sharded Ray path is not tested here")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("served", [SHARD_WEB], indirect=True)
def test_run_on_ray_equals_a_single_run(served: HostWeb, tmp_path: Path, local_ray: None) -> None:
    source = served.write_list(tmp_path / "list.txt")
    single = C.collect(source, tmp_path / "single", **QUICK)
    merged = C.run_on_ray(source, tmp_path / "ray", shards=3, **QUICK)
    pd.testing.assert_frame_equal(merged, single)
    assert sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir()) == ["1", "2", "3"]


# 40 URLs on 8 answering hosts, slow enough (100 ms a round trip, one URL per host at once,
# 2 downloads) that a shard takes a second or more: long enough to be killed mid-way
SLOW_WEB = ({f"s{i}.example": 5 for i in range(8)}, {f"s{i}.example": "ok" for i in range(8)})


def _holder_of(path: Path) -> int | None:
    """The process (not this one) that has ``path`` open (Linux ``/proc``), if any."""
    target = str(path)
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                return pid
        except OSError:        # gone, or not ours to look at
            continue
    return None


def _kill_when_journalled(journal_path: Path, lines: int, killed: dict, stop: threading.Event,
                          ) -> None:
    """SIGKILL the process writing a journal once it holds ``lines`` lines; note what it held."""
    while not stop.is_set():
        if journal_path.exists() and journal_path.read_text().count("\n") >= lines:
            pid = _holder_of(journal_path)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                while _holder_of(journal_path) == pid:     # dead: its files are closed
                    time.sleep(0.01)
                killed["pid"] = pid
                killed["journal"] = C.read_journal(journal_path)   # a torn line: skipped
                return
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the Ray worker to kill "
                    "through /proc (Linux only)")
@pytest.mark.parametrize("served", [SLOW_WEB], indirect=True)
def test_a_ray_worker_killed_mid_shard_is_resumed(served: HostWeb, tmp_path: Path,
                                                 local_ray: None) -> None:
    """The Ray worker collecting the largest shard is SIGKILLed after a few photos: Ray's
    retry resumes that shard from its journal; the merged manifest equals a single run's,
    and no URL the killed worker had finished is downloaded again."""
    for host in served.hosts:
        host.rtt = 0.1
    source = served.write_list(tmp_path / "list.txt")
    options = {**QUICK, "workers": 2, "per_host": 1}
    single = C.collect(source, tmp_path / "single", **options)
    urls = single["url"].tolist()
    sizes = Counter(C.shard_of_host(host_of(url), 2) for url in urls)
    biggest, size = sizes.most_common(1)[0]
    before = Counter(served.hits)
    shard_journal = tmp_path / "ray" / "shards" / str(biggest) / "journal.jsonl"
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_journalled,
                              args=(shard_journal, 3, killed, stop), daemon=True)
    killer.start()
    try:
        merged = C.run_on_ray(source, tmp_path / "ray", shards=2, **options)
    finally:
        stop.set()
        killer.join(5)
    assert killed, "the shard finished before it could be killed"
    finished = {key[4:] for key in killed["journal"]}
    assert 3 <= len(finished) < size                       # killed mid-shard
    pd.testing.assert_frame_equal(merged, single)          # resumed: nothing lost
    fetched = Counter(served.hits) - before
    again = [url for url in finished if fetched[_hit_key(url)] != 1]
    assert not again, f"downloaded again after the kill: {again}"
    assert all(fetched[_hit_key(url)] >= 1 for url in urls)


def _hit_key(url: str) -> str:
    """:attr:`HostWeb.hits` key of a URL (``address + path``)."""
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")
