"""The RTP/pcap writer behind the SIPp test caller, checked byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

from media.pcm import to_array, tone, ulaw_decode
from devtools import sipcall


def _parse_pcap(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    magic, major, minor, _, _, snap, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    out, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + incl]
        assert incl == orig == len(frame)
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip = frame[14:34]
        assert ip[9] == 17 and sipcall._ip_checksum(ip) == 0  # UDP, valid header checksum
        udp_len = struct.unpack("!H", frame[38:40])[0]
        out.append((sec + usec / 1e6, frame[42 : 34 + udp_len]))
        off += 16 + incl
    return out


def test_audio_packets_are_pcmu_20ms_with_running_seq_and_timestamp(tmp_path: Path) -> None:
    pcm = tone(1000.0, 100, 8000)
    pkts = sipcall.rtp_packets([sipcall.Audio(pcm)])
    path = tmp_path / "a.pcap"
    sipcall.write_pcap(path, pkts)
    got = _parse_pcap(path)
    assert len(got) == 5
    hdrs = [struct.unpack("!BBHII", p[:12]) for _, p in got]
    assert all(h[0] == 0x80 for h in hdrs)
    assert [h[1] & 0x7F for h in hdrs] == [0] * 5
    assert [h[1] >> 7 for h in hdrs] == [1, 0, 0, 0, 0]  # marker on the first packet only
    assert [h[2] - hdrs[0][2] for h in hdrs] == [0, 1, 2, 3, 4]
    assert [h[3] - hdrs[0][3] for h in hdrs] == [0, 160, 320, 480, 640]
    times = [t - got[0][0] for t, _ in got]
    assert [round(t, 3) for t in times] == [0.0, 0.02, 0.04, 0.06, 0.08]
    payload = b"".join(p[12:] for _, p in got)
    assert len(payload) == 800
    decoded = to_array(ulaw_decode(payload)).astype(int)
    original = to_array(pcm).astype(int)
    assert max(abs(decoded - original)) <= abs(original).max() // 16 + 132  # mu-law of our tone


def test_dtmf_follows_rfc4733(tmp_path: Path) -> None:
    pkts = sipcall.rtp_packets([sipcall.Digit("#", ms=100), sipcall.Digit("7", ms=60)])
    events = [struct.unpack("!BBHIIBBH", p[:16]) for _, p in pkts]
    first = [e for e in events if e[5] == 11]
    assert len(first) == 5 + 3
    assert all(e[1] & 0x7F == 101 for e in events)
    assert first[0][1] >> 7 == 1  # marker starts the event
    assert len({e[3] for e in first}) == 1  # one timestamp for the whole event
    assert [e[7] for e in first[:5]] == [160, 320, 480, 640, 800]
    assert [bool(e[6] & 0x80) for e in first] == [False] * 5 + [True] * 3  # end bit, sent 3x
    seven = [e for e in events if e[5] == 7]
    assert seven and seven[0][3] > first[0][3]
    seqs = [e[2] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_scenario_mentions_pcap_and_codecs(tmp_path: Path) -> None:
    xml = sipcall.scenario_xml(tmp_path / "x.pcap", hold_ms=1500)
    assert 'play_pcap_audio="' + str(tmp_path / "x.pcap") + '"' in xml
    assert "a=rtpmap:101 telephone-event/8000" in xml and "RTP/AVP 0 101" in xml
    assert '<pause milliseconds="1500"/>' in xml and "BYE sip:" in xml
    assert '<recv request="BYE"' in sipcall.scenario_xml(tmp_path / "x.pcap", hold_ms=1, wait_for_bye=True)


def test_why_names_the_status_line_sipp_got_instead() -> None:
    """SIPp's error file (as -trace_err writes it) is long; `why` keeps each event's first line,
    which names what SIPp expected and the status line it got."""
    errors = ("The following events occurred:\n"
              "2026-12-03\t07:09:10.377421\t1796281750.377421: Aborting call on unexpected message for Call-Id "
              "'1-16943@10.77.0.1': while expecting '200' (index 4), received 'SIP/2.0 100 Trying\n"
              "Via: SIP/2.0/UDP 10.77.0.1:35636;branch=z9hG4bK-16943-1-0\nCSeq: 1 INVITE\nContent-Length:  0\n\n'\n")
    failed = sipcall.SippResult(1, 2.0, "stdout", "", errors)
    assert failed.why == ("SIPp rc=1: 1796281750.377421: Aborting call on unexpected message for Call-Id '1-16943@10.77.0.1': "
                          "while expecting '200' (index 4), received 'SIP/2.0 100 Trying")
    assert sipcall.SippResult(255, 1.0, "", "sipp: cannot bind\n", "").why == "SIPp rc=255: sipp: cannot bind"
    assert sipcall.SippResult(0, 1.0, "", "", "").why == ""
