"""Kamailio's dispatcher in front of two real Asterisk servers, each host its own network namespace.

SIPp calls the proxy: calls spread over both servers; a server that stops gets no new calls once
its OPTIONS probes fail, a call sent to it before that fails over to the other, the calls it had
end with a BYE; when it comes back the probes bring it back into rotation.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from devtools import cluster, kamailio
from devtools.sipcall import SippResult
from devtools.cluster import Bed

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("sipp"),
                                reason="network namespaces need root and unshare; calls need sipp")

# The failover timeout is also how long a live server may take to answer a probe or an INVITE: on
# a loaded 2-core machine a freshly started Asterisk has taken longer than 1.5 s.
PING_S, THRESHOLD, FAILOVER_MS = 1, 2, 3000


def failed_over(k: kamailio.Kamailio) -> int:
    return k.log_path.read_text(errors="replace").count(" failed over to ")


def script_log(k: kamailio.Kamailio) -> list[str]:
    """The config's own log lines (dispatch, failover, stray replies): what a failure needs."""
    return [line for line in k.log_path.read_text(errors="replace").splitlines() if "<script>" in line][-20:]


def test_the_dispatcher_spreads_probes_and_takes_a_server_back(bed: Bed, tmp_path: Path) -> None:
    a, b = bed.start("a"), bed.start("b")
    with kamailio.running("test", bed.proxy, [a.sip_host, b.sip_host], netns_argv=bed.lan.hosts["kamailio"].argv(),
                          log_path=tmp_path / "kamailio.log", ping_s=PING_S, threshold=THRESHOLD, failover_ms=FAILOVER_MS) as k:
        k.wait_for({bed.uri("a"): True, bed.uri("b"): True}, timeout=15)

        # Spread: round robin over both.
        before = bed.processed()
        results = bed.calls(6)
        assert all(r.ok for r in results), [r.why for r in results if not r.ok]
        spread = {n: c - before[n] for n, c in bed.processed().items()}
        assert spread == {"a": 3, "b": 3}, spread

        # A call in progress on each; stopping b ends b's with a BYE, a's goes on.
        with ThreadPoolExecutor(2) as pool:
            long_calls: list[Future[SippResult]] = [pool.submit(bed.call, "silence", ms=20_000, wait_for_bye=True)
                                                    for _ in range(2)]
            deadline = time.monotonic() + 15
            while not (a.active_channels() == 1 and b.active_channels() == 1):
                assert time.monotonic() < deadline, "the two calls did not land one on each Asterisk"
                time.sleep(0.1)
            cluster.stop_asterisk(b)
            done, _ = wait(long_calls, timeout=10, return_when=FIRST_COMPLETED)
            assert len(done) == 1 and next(iter(done)).result().ok, "the call on the stopped Asterisk did not end with a BYE"
            assert a.active_channels() == 1  # a's call is untouched
            a.rx("channel request hangup all")
            assert all(f.result(timeout=30).ok for f in long_calls)

        # The probes notice: b is marked down, and every new call goes straight to a.
        k.wait_for({bed.uri("b"): False}, timeout=PING_S * THRESHOLD + 10)
        failovers = failed_over(k)
        before = bed.processed()
        results = bed.calls(4)
        assert all(r.ok for r in results)
        assert bed.processed()["a"] - before["a"] == 4
        assert failed_over(k) == failovers  # none was sent to b first

        # b is back: the probes put it back into rotation.
        b = bed.start("b")
        k.wait_for({bed.uri("b"): True}, timeout=PING_S * THRESHOLD + 10)
        before = bed.processed()
        assert all(r.ok for r in bed.calls(4))
        after = bed.processed()
        assert after["a"] - before["a"] == 2 and after["b"] - before["b"] == 2, (before, after)


def test_a_call_sent_to_a_dead_server_fails_over(bed: Bed, tmp_path: Path) -> None:
    """Before any probe has noticed (probes every 60 s here), a call the round robin sends to a
    stopped Asterisk gets no answer: after the failover timeout it goes to the next server, and the
    dead one is marked down at once, so the calls after it go straight to the live one. (A call to
    each first: the failover's INVITE is not a freshly started Asterisk's first.)"""
    a, b = bed.start("a"), bed.start("b")
    with kamailio.running("failover", bed.proxy, [a.sip_host, b.sip_host], netns_argv=bed.lan.hosts["kamailio"].argv(),
                          log_path=tmp_path / "kamailio.log", ping_s=60, threshold=THRESHOLD, failover_ms=FAILOVER_MS) as k:
        k.wait_for({bed.uri("a"): True, bed.uri("b"): True}, timeout=15)
        warm = bed.calls(2)
        assert all(r.ok for r in warm), [r.why for r in warm if not r.ok]
        cluster.stop_asterisk(b)
        before = bed.processed()
        results = bed.calls(2, at_once=1)
        assert all(r.ok for r in results), ([r.why for r in results if not r.ok], script_log(k))
        assert bed.processed()["a"] - before["a"] == 2
        assert failed_over(k) == 1
        assert {d.uri: d.up for d in k.destinations()}[bed.uri("b")] is False
        assert all(r.ok for r in bed.calls(3, at_once=1))
        assert failed_over(k) == 1


def _reply(code: str, call_id: str, port: int, proxy: str) -> bytes:
    return (f"SIP/2.0 {code}\r\nVia: SIP/2.0/UDP {proxy}:{kamailio.SIP_PORT};branch=z9hG4bKstray.0\r\n"
            f"Via: SIP/2.0/UDP {cluster.SELF}:{port};branch=z9hG4bK-caller\r\nFrom: <sip:caller@{cluster.SELF}>;tag=1\r\n"
            f"To: <sip:echo@{proxy}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def test_a_stray_provisional_reply_is_dropped_and_a_stray_2xx_passes(bed: Bed, tmp_path: Path) -> None:
    """A 1xx matching no transaction (an Asterisk's late 100 Trying) never reaches the caller: SIPp,
    like other strict phones, aborts a call on one. A stray 2xx is still forwarded by its Via."""
    with kamailio.running("stray", bed.proxy, [bed.lan.addresses["asterisk-a"]], netns_argv=bed.lan.hosts["kamailio"].argv(),
                          log_path=tmp_path / "kamailio.log", ping_s=60) as k, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind((cluster.SELF, 0))
        caller.settimeout(2)
        port = caller.getsockname()[1]
        for code in ("100 Trying", "180 Ringing", "200 OK"):
            caller.sendto(_reply(code, f"stray-{code[:3]}", port, bed.proxy), (bed.proxy, kamailio.SIP_PORT))
        got = caller.recvfrom(4096)[0]
        assert got.startswith(b"SIP/2.0 200 OK\r\n") and b"Call-ID: stray-200" in got, got[:200]
        with pytest.raises(socket.timeout):
            caller.recvfrom(4096)
        log_text = k.log_path.read_text(errors="replace")
        assert "stray 100 Trying for call stray-100" in log_text and "stray 180 Ringing" in log_text


def test_the_config_parses_with_a_deployment_s_values(tmp_path: Path) -> None:
    k = kamailio.Kamailio("check", "127.0.0.1", ["10.0.0.11", "10.0.0.12:5080"], log_path=tmp_path / "k.log")
    out = k.check()
    assert "config file ok" in out.lower()
    text = (k.root / k.etc.lstrip("/") / "dispatcher.list").read_text()
    assert "1 sip:10.0.0.11:5060\n" in text and "1 sip:10.0.0.12:5080\n" in text


def test_dispatcher_list_parsing() -> None:
    sample = ("{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: 1\n\t\t\tTARGETS: {\n\t\t\t\tDEST: {\n"
              "\t\t\t\t\tURI: sip:10.77.0.11:5060\n\t\t\t\t\tFLAGS: AP\n\t\t\t\t\tPRIORITY: 0\n\t\t\t\t}\n"
              "\t\t\t\tDEST: {\n\t\t\t\t\tURI: sip:10.77.0.12:5060\n\t\t\t\t\tFLAGS: IP\n\t\t\t\t}\n")
    got = kamailio.parse_dispatcher_list(sample)
    assert [(d.uri, d.up) for d in got] == [("sip:10.77.0.11:5060", True), ("sip:10.77.0.12:5060", False)]
    assert kamailio.Destination("sip:x", "TP").up  # a probe failed, not yet past the threshold: still used


def test_each_cluster_asterisk_gets_its_own_directories_address_and_proxy(tmp_path: Path) -> None:
    bed = cluster.ClusterAsterisk(root=tmp_path, sip_host="10.77.0.11", ari_password="x", name="a")
    files = cluster.instance_configs(bed, proxy="10.77.0.2", audiosocket="10.77.0.21:9092")
    conf = files["asterisk.conf"].decode()
    assert "[directories]\n" in conf and "(!)" not in conf  # a real section: the paths apply
    for key in ("astetcdir", "astrundir", "astlogdir", "astspooldir", "astdbdir"):
        assert f"{key} => /var/lib/phoneagent-cluster/a/" in conf
    pjsip = files["pjsip.conf"].decode()
    assert "bind = 10.77.0.11:5060" in pjsip and "127.0.0.1:5060" not in pjsip.split("[sipp]")[0]
    assert "match = 10.77.0.2" in pjsip and "KAMAILIO_ADDRESS" not in pjsip
    assert "bindaddr = 10.77.0.11" in files["http.conf"].decode()
    assert "PHONEAGENT_AUDIOSOCKET = 10.77.0.21:9092" in files["extensions.conf"].decode()
