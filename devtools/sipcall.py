"""Real SIP test calls with SIPp (Debian package sip-tester): G.711 audio and RFC 2833 DTMF.

SIPp replays RTP from a pcap file, so we write that pcap ourselves: mu-law (PT 0) audio packets
of whatever we want the caller to say, and RFC 4733 telephone-event packets (PT 101) for digits,
each with a correct RTP timestamp, sequence and 20 ms spacing. The scenario is a plain UAC:
INVITE with SDP, ACK, play the pcap, then BYE (or wait for the far end's BYE).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from media.pcm import frame_bytes, ulaw_encode

PT_PCMU = 0
PT_EVENT = 101
_DTMF_EVENT = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


@dataclasses.dataclass(frozen=True)
class Audio:
    """slin 8 kHz audio the caller sends (encoded to mu-law on the wire)."""

    pcm8k: bytes


@dataclasses.dataclass(frozen=True)
class Digit:
    digit: str
    ms: int = 160


@dataclasses.dataclass(frozen=True)
class Pause:
    """The caller says nothing. Phones keep sending RTP (silence) unless `rtp=False`."""

    ms: int
    rtp: bool = True


Step = Audio | Digit | Pause


def rtp_packets(steps: list[Step], ssrc: int = 0x5EED1234) -> list[tuple[float, bytes]]:
    """(send time in seconds, RTP packet) for a caller script, 20 ms packetisation."""
    out: list[tuple[float, bytes]] = []
    seq, ts, t = 1000, 160000, 0.0
    marker = True

    def rtp(pt: int, payload: bytes, mark: bool, stamp: int) -> bytes:
        return struct.pack("!BBHII", 0x80, (0x80 if mark else 0) | pt, seq & 0xFFFF, stamp & 0xFFFFFFFF, ssrc) + payload

    for step in steps:
        if isinstance(step, Audio):
            n = frame_bytes(8000, 20)
            data = step.pcm8k + bytes(-len(step.pcm8k) % n)
            for i in range(0, len(data), n):
                out.append((t, rtp(PT_PCMU, ulaw_encode(data[i : i + n]), marker, ts)))
                marker = False
                seq, ts, t = seq + 1, ts + 160, t + 0.020
        elif isinstance(step, Digit):
            event = _DTMF_EVENT[step.digit.upper()]
            start_ts = ts
            n_pkts = max(1, step.ms // 20)
            for i in range(n_pkts):
                dur = (i + 1) * 160
                out.append((t, rtp(PT_EVENT, struct.pack("!BBH", event, 10, dur), i == 0, start_ts)))
                seq, t = seq + 1, t + 0.020
            for _ in range(3):  # the end packet is sent three times (RFC 4733 2.5.1.4)
                out.append((t, rtp(PT_EVENT, struct.pack("!BBH", event, 0x80 | 10, n_pkts * 160), False, start_ts)))
                seq += 1
            ts += n_pkts * 160
            t += 0.040  # inter-digit gap
            ts += 320
            marker = True
        elif step.rtp:
            n = frame_bytes(8000, 20)
            quiet = ulaw_encode(bytes(n))
            for _ in range(max(1, step.ms // 20)):
                out.append((t, rtp(PT_PCMU, quiet, marker, ts)))
                marker = False
                seq, ts, t = seq + 1, ts + 160, t + 0.020
        else:
            frames = max(1, step.ms // 20)
            t += frames * 0.020
            ts += frames * 160
            marker = True
    return out


def write_pcap(path: Path, packets: list[tuple[float, bytes]], src_port: int = 6000, dst_port: int = 6002) -> None:
    """A classic libpcap file (Ethernet/IPv4/UDP) that SIPp's play_pcap_audio replays."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        base = 1_700_000_000.0
        for ident, (t, payload) in enumerate(packets):
            udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
            ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
            ip_hdr = ip_hdr[:10] + struct.pack("!H", _ip_checksum(ip_hdr)) + ip_hdr[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip_hdr + udp
            secs = base + t
            f.write(struct.pack("<IIII", int(secs), int(round((secs % 1) * 1e6)) % 1_000_000, len(frame), len(frame)))
            f.write(frame)


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def scenario_xml(pcap: Path, *, hold_ms: int, wait_for_bye: bool = False, headers: dict[str, str] | None = None,
                 via_proxy: bool = False) -> str:
    """A UAC scenario: INVITE (PCMU + telephone-event), play the pcap, then hang up or await BYE.
    `via_proxy`: the INVITE goes to a proxy that record-routes (Kamailio); ACK and BYE then go to
    the answering Asterisk's Contact along the recorded route, as a real phone's would."""
    target = "[next_url]" if via_proxy else "sip:[service]@[remote_ip]:[remote_port]"
    routes = "[routes]\n" if via_proxy else ""
    rrs = ' rrs="true"' if via_proxy else ""
    sdp = (
        "v=0\n"
        "o=sipp 1 1 IN IP[local_ip_type] [local_ip]\n"
        "s=phoneagent-test\n"
        "c=IN IP[media_ip_type] [media_ip]\n"
        "t=0 0\n"
        "m=audio [media_port] RTP/AVP 0 101\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\n"
        "a=ptime:20\n"
        "a=sendrecv\n"
    )
    invite = (
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        "From: \"phoneagent test\" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
        "To: <sip:[service]@[remote_ip]:[remote_port]>\n"
        "Call-ID: [call_id]\n"
        "CSeq: 1 INVITE\n"
        "Contact: <sip:caller@[local_ip]:[local_port]>\n"
        "Max-Forwards: 70\n"
        + "".join(f"{k}: {v}\n" for k, v in (headers or {}).items())
        + "Content-Type: application/sdp\n"
        "Content-Length: [len]\n\n" + sdp
    )
    ack = (
        f"ACK {target} SIP/2.0\n{routes}"
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        "From: \"phoneagent test\" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
        "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\n"
        "Call-ID: [call_id]\nCSeq: 1 ACK\nContact: <sip:caller@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    if wait_for_bye:
        ending = (
            '  <recv request="BYE" timeout="' + str(hold_ms + 15000) + '"/>\n'
            "  <send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\n"
            "Contact: <sip:caller@[local_ip]:[local_port]>\nContent-Length: 0\n\n]]></send>\n"
        )
    else:
        bye = (
            f"BYE {target} SIP/2.0\n{routes}"
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            "From: \"phoneagent test\" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
            "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\n"
            "Call-ID: [call_id]\nCSeq: 2 BYE\nContact: <sip:caller@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0\n\n"
        )
        ending = f'  <pause milliseconds="{hold_ms}"/>\n  <send><![CDATA[\n{bye}]]></send>\n  <recv response="200" timeout="5000"/>\n'
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        '<scenario name="phoneagent G.711 caller with RFC 2833 DTMF">\n'
        f"  <send retrans=\"500\"><![CDATA[\n{invite}]]></send>\n"
        '  <recv response="100" optional="true"/>\n'
        '  <recv response="180" optional="true"/>\n'
        '  <recv response="183" optional="true"/>\n'
        f'  <recv response="200" rtd="true" timeout="10000"{rrs}/>\n'
        f"  <send><![CDATA[\n{ack}]]></send>\n"
        f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
        f"{ending}"
        "</scenario>\n"
    )


@dataclasses.dataclass(frozen=True)
class SippResult:
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def why(self) -> str:
        """What went wrong, short enough to survive pytest's truncation: SIPp's event lines (each
        names what it expected and the status line it got instead), else the tail of its output."""
        if self.ok:
            return ""
        events = [line for line in self.errors.splitlines() if re.match(r"\d{4}-\d\d-\d\d\t", line)]
        tail = (self.stderr.strip() or self.stdout.strip())[-300:]
        return f"SIPp rc={self.returncode}: " + (" | ".join(e.split("\t", 2)[-1] for e in events) or tail)


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise FileNotFoundError("sipp not found: install the Debian package sip-tester (./dev installs it)")
    return path


def place_call(
    host: str,
    port: int,
    extension: str,
    steps: list[Step],
    *,
    hold_ms: int | None = None,
    wait_for_bye: bool = False,
    headers: dict[str, str] | None = None,
    local_port: int = 0,
    timeout: float = 60.0,
    workdir: Path | None = None,
    local_ip: str = "127.0.0.1",
    via_proxy: bool = False,
    netns: Sequence[str] = (),
) -> SippResult:
    """Place one SIP call with SIPp and block until it ends. Returns what SIPp reported.
    `netns`: an nsenter prefix, to call from inside that network namespace.

    `hold_ms` defaults to the script's length plus a second, so every packet is sent before BYE.
    """
    packets = rtp_packets(steps)
    if hold_ms is None:
        hold_ms = int((packets[-1][0] if packets else 0) * 1000) + 1000
    tmp = Path(tempfile.mkdtemp(prefix="phoneagent-sipp-", dir=workdir))
    try:
        pcap = tmp / "caller.pcap"
        write_pcap(pcap, packets)
        scen = tmp / "uac.xml"
        scen.write_text(scenario_xml(pcap, hold_ms=hold_ms, wait_for_bye=wait_for_bye, headers=headers, via_proxy=via_proxy))
        cmd = [
            *netns, sipp_binary(), f"{host}:{port}", "-sf", str(scen), "-s", extension, "-m", "1", "-l", "1",
            "-i", local_ip, "-mi", local_ip, "-p", str(local_port or _free_udp_port()),
            "-mp", str(_free_udp_port(even=True)), "-trace_err", "-error_file", str(tmp / "errors.log"),
            "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
        ]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15, cwd=tmp)
        errors = (tmp / "errors.log").read_text(errors="replace") if (tmp / "errors.log").exists() else ""
        return SippResult(proc.returncode, time.monotonic() - t0, proc.stdout[-4000:], proc.stderr[-4000:], errors[-4000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_HANDED_OUT: dict[int, float] = {}  # port -> when: ports given to a SIPp of this process lately
_PORTS_LOCK = threading.Lock()
_HOLD_S = 120.0  # long enough for the SIPp that got a port to bind it


def _free_udp_port(even: bool = False) -> int:
    """A free loopback UDP port, and with `even` a run of four (SIPp's media port takes the
    next ones for RTCP and video). Ports handed out in the last two minutes are not handed out
    again: many SIPp processes started at once (bench.soak) would otherwise race for the port
    the kernel just freed."""
    import socket

    span = 4 if even else 1
    with _PORTS_LOCK:
        now = time.monotonic()
        for port, when in list(_HANDED_OUT.items()):
            if now - when > _HOLD_S:
                del _HANDED_OUT[port]
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if even and port % 2:
                continue
            ports = range(port, port + span)
            if any(p in _HANDED_OUT for p in ports) or not all(_udp_free(p) for p in ports[1:]):
                continue
            for p in ports:
                _HANDED_OUT[p] = now
            return port
    raise RuntimeError("no free UDP port found")


def _udp_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except (OSError, OverflowError):  # in use, or past 65535
            return False
    return True
