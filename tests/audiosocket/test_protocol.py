"""Tests for the sans-IO AudioSocket codec (audiosocket.protocol).

Every decode case is fed three ways (whole, one byte at a time, with a partial next
frame left over), as h11's tests do; a Pipe stands in for the TCP connection.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiosocket.protocol import (
    AUDIO_RATES,
    NEED_DATA,
    Audio,
    AudioSocketDecoder,
    Closed,
    Dtmf,
    ErrorCode,
    ErrorFrame,
    Event,
    Hangup,
    Kind,
    ProtocolError,
    UnknownFrame,
    UuidFrame,
    describe_error,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_event,
    encode_frame,
    encode_hangup,
    encode_uuid,
    iter_events,
    kind_for_rate,
)

CALL_ID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
UUID_FRAME = b"\x01\x00\x10" + bytes.fromhex("40325ec25efd4bd3805f53576e581d13")
# Partial next frames (an slin16 frame of 4 bytes) that must stay buffered.
TRAILERS = (b"\x12", b"\x12\x00\x04", b"\x12\x00\x04\x01\x02")
UNKNOWN_KINDS = sorted(set(range(256)) - {int(k) for k in Kind})


# --- helpers ---------------------------------------------------------------------------

def drain(dec: AudioSocketDecoder) -> list[Event]:
    """All events available now; asserts the decoder really stopped on NEED_DATA/Closed."""
    events = list(iter_events(dec))
    assert not events or isinstance(events[-1], Closed) or dec.next_event() is NEED_DATA
    return events


def feed(chunks: Iterable[bytes], *, eof: bool = False, **kw: Any) -> list[Event]:
    """Feed chunks, draining events after each; optionally end with EOF."""
    dec = AudioSocketDecoder(**kw)
    events: list[Event] = []
    for chunk in filter(None, chunks):  # b"" would mean EOF
        dec.receive_data(chunk)
        events += drain(dec)
    if eof:
        dec.receive_data(b"")
        events += drain(dec)
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def decode_all_ways(data: bytes, *, eof: bool = False, **kw: Any) -> list[Event]:
    """Decode ``data`` whole, byte by byte and with a partial frame after it; all must agree."""
    whole = feed([data], eof=eof, **kw)
    assert feed(bytewise(data), eof=eof, **kw) == whole
    if not eof:
        for trailer in TRAILERS:
            dec = AudioSocketDecoder(**kw)
            dec.receive_data(data + trailer)
            assert drain(dec) == whole
            assert dec.next_event() is NEED_DATA
            assert dec.buffered == len(trailer)
            dec.receive_data(b"\x12\x00\x04\x01\x02\x03\x04"[len(trailer):])
            assert drain(dec) == [Audio(Kind.SLIN16, 16000, b"\x01\x02\x03\x04")]
            assert dec.buffered == 0
    return whole


class Pipe:
    """Stands in for one direction of a TCP connection: events in, decoded events out."""

    def __init__(self, **kw: Any) -> None:
        self.decoder = AudioSocketDecoder(**kw)

    def send(self, *events: Event) -> list[Event]:
        for event in events:
            self.decoder.receive_data(encode_event(event))
        return drain(self.decoder)

    def close(self) -> list[Event]:
        self.decoder.receive_data(b"")
        return drain(self.decoder)


# --- every kind, three ways ------------------------------------------------------------

CASES: list[tuple[str, bytes, Event]] = [
    ("hangup", b"\x00\x00\x00", Hangup()),
    ("uuid", UUID_FRAME, UuidFrame(CALL_ID)),
    *[(f"dtmf-{d}", b"\x03\x00\x01" + d.encode(), Dtmf(d.upper()))
      for d in "0123456789*#ABCDabcd"],
    *[(f"{k.name}-{len(pcm)}", bytes((k, 0, len(pcm))) + pcm, Audio(k, r, pcm))
      for k, r in AUDIO_RATES.items() for pcm in (b"", b"\x10\x27")],
    ("error-hangup", b"\xff\x00\x01\x01", ErrorFrame(1, b"\x01")),
    ("error-empty", b"\xff\x00\x00", ErrorFrame(None, b"")),
    ("error-long", b"\xff\x00\x03\x04xy", ErrorFrame(4, b"\x04xy")),
    *[(f"unknown-{k:02x}", bytes((k, 0, 2)) + b"hi", UnknownFrame(k, b"hi"))
      for k in (0x02, 0x04, 0x0F, 0x19, 0x80, 0xFE)],
    ("unknown-empty", b"\x02\x00\x00", UnknownFrame(0x02, b"")),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_kind_decodes_three_ways(data: bytes, expected: Event) -> None:
    stream = UUID_FRAME + data
    assert decode_all_ways(stream) == [UuidFrame(CALL_ID), expected]
    assert decode_all_ways(stream, eof=True) == [UuidFrame(CALL_ID), expected, Closed()]
    # Without the UUID requirement the frame decodes alone too.
    assert decode_all_ways(data, expect_uuid_first=False) == [expected]


def test_every_unknown_kind_is_reported_not_fatal() -> None:
    stream = UUID_FRAME + b"".join(bytes((k, 0, 1, k)) for k in UNKNOWN_KINDS)
    events = decode_all_ways(stream)
    assert events[1:] == [UnknownFrame(k, bytes((k,))) for k in UNKNOWN_KINDS]


def test_a_whole_call_through_pipes() -> None:
    to_server, to_asterisk = Pipe(), Pipe(expect_uuid_first=False)
    speech = b"\x00\x01" * 320
    assert to_server.send(UuidFrame(CALL_ID), Audio(Kind.SLIN16, 16000, speech)) == [
        UuidFrame(CALL_ID), Audio(Kind.SLIN16, 16000, speech)]
    assert to_server.decoder.uuid == CALL_ID
    assert to_asterisk.send(Audio(Kind.SLIN16, 16000, bytes(640))) == [
        Audio(Kind.SLIN16, 16000, bytes(640))]
    assert to_server.send(Dtmf("#")) == [Dtmf("#")]
    assert to_asterisk.send(Hangup()) == [Hangup()]
    assert to_server.close() == [Closed()]  # Asterisk hangs up with a bare TCP close


def test_max_size_frame_and_many_frames_in_one_chunk() -> None:
    big = encode_audio(bytes(65534), 48000)
    small = encode_audio(bytes(640), 16000) * 100
    events = feed([UUID_FRAME + big + small])
    assert events[1] == Audio(Kind.SLIN48, 48000, bytes(65534))
    assert len(events) == 102
    assert events[-1] == Audio(Kind.SLIN16, 16000, bytes(640))


# --- encoding, byte-exact --------------------------------------------------------------

def test_encodings_are_byte_exact() -> None:
    assert encode_dtmf("5") == b"\x03\x00\x015"
    assert encode_dtmf("b") == b"\x03\x00\x01B"
    assert encode_dtmf("*") == b"\x03\x00\x01*"
    assert encode_uuid(CALL_ID) == UUID_FRAME
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_audio(b"\x01\x00\xff\x7f", 16000) == b"\x12\x00\x04\x01\x00\xff\x7f"
    assert encode_audio(bytes(320)) == b"\x10\x01\x40" + bytes(320)
    assert encode_audio(b"", 192000) == b"\x18\x00\x00"
    assert encode_error(ErrorCode.FRAME_FORWARDING) == b"\xff\x00\x01\x02"
    assert encode_frame(0x42, b"ab") == b"B\x00\x02ab"
    assert encode_frame(Kind.HANGUP) == b"\x00\x00\x00"
    assert encode_frame(0x10, bytes(65535))[:3] == b"\x10\xff\xff"
    assert encode_event(UnknownFrame(0x02, b"\x01")) == b"\x02\x00\x01\x01"
    assert encode_event(ErrorFrame(None, b"")) == b"\xff\x00\x00"
    assert encode_event(ErrorFrame(4)) == b"\xff\x00\x01\x04"


def test_rates_and_kinds() -> None:
    assert {k: AUDIO_RATES[k] for k in AUDIO_RATES} == {
        Kind.SLIN: 8000, Kind.SLIN12: 12000, Kind.SLIN16: 16000, Kind.SLIN24: 24000,
        Kind.SLIN32: 32000, Kind.SLIN44: 44100, Kind.SLIN48: 48000, Kind.SLIN96: 96000,
        Kind.SLIN192: 192000}
    for kind, rate in AUDIO_RATES.items():
        assert kind_for_rate(rate) is kind
    with pytest.raises(ValueError, match=r"unsupported AudioSocket sample rate 11025: .*8000"):
        kind_for_rate(11025)


@pytest.mark.parametrize("call", [
    lambda: encode_frame(256), lambda: encode_frame(-1), lambda: encode_frame(0x10, bytes(65536)),
    lambda: encode_dtmf("E"), lambda: encode_dtmf("12"), lambda: encode_dtmf(""),
    lambda: encode_audio(b"\x00", 8000), lambda: encode_audio(b"", 11025),
    lambda: encode_error(256), lambda: encode_event(Closed()),
    lambda: encode_event(UnknownFrame(0x10, b"")),
    lambda: encode_event(Audio(Kind.SLIN, 16000, b"")), lambda: ErrorFrame(1, b"\x02"),
    lambda: ErrorFrame(None, b"\x02"),
], ids=["kind256", "kind-1", "payload65536", "dtmfE", "dtmf12", "dtmf-empty", "odd-audio",
        "bad-rate", "code256", "closed", "unknown-is-known", "rate-mismatch", "code-vs-payload",
        "none-vs-payload"])
def test_encoders_reject_bad_input(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_error_codes_and_descriptions() -> None:
    assert [int(c) for c in ErrorCode] == [0, 1, 2, 4]
    events = feed([UUID_FRAME + encode_error(1) + encode_error(3) + b"\xff\x00\x00"])
    assert events[1:] == [ErrorFrame(1, b"\x01"), ErrorFrame(3, b"\x03"), ErrorFrame(None, b"")]
    assert isinstance(events[1], ErrorFrame)
    assert events[1].description == "hangup of calling party (code 0x01)"
    assert describe_error(3) == "hangup of calling party + frame forwarding error (code 0x03)"
    assert describe_error(ErrorCode.MEMORY) == "memory (allocation) error (code 0x04)"
    assert "unknown error bits 0x08" in describe_error(0x09)
    assert describe_error(None) == "error frame without a code"
    assert describe_error(0) == "no error (code 0x00)"


# --- closing ---------------------------------------------------------------------------

def test_closed_after_eof_and_forever_after() -> None:
    dec = AudioSocketDecoder()
    dec.receive_data(UUID_FRAME + encode_hangup())
    dec.receive_data(b"")
    dec.receive_data(b"")  # a second EOF is harmless
    assert not dec.closed
    assert list(iter_events(dec)) == [UuidFrame(CALL_ID), Hangup(), Closed()]
    assert dec.closed and dec.uuid == CALL_ID and dec.buffered == 0
    assert [dec.next_event() for _ in range(3)] == [Closed()] * 3
    assert list(iter_events(dec)) == [Closed()]


def test_eof_before_any_frame_is_just_closed() -> None:
    assert feed([], eof=True) == [Closed()]


def test_need_data_until_frame_complete() -> None:
    dec = AudioSocketDecoder()
    assert dec.next_event() is NEED_DATA
    for byte in bytewise(UUID_FRAME)[:-1]:
        dec.receive_data(byte)
        assert dec.next_event() is NEED_DATA
    dec.receive_data(UUID_FRAME[-1:])
    assert dec.next_event() == UuidFrame(CALL_ID)
    assert dec.next_event() is NEED_DATA


# --- malformed input -------------------------------------------------------------------

def expect_error(chunks: Iterable[bytes], match: str, **kw: Any) -> AudioSocketDecoder:
    """Feed chunks (b"" = EOF) and drain; assert the ProtocolError and that it is sticky."""
    dec = AudioSocketDecoder(**kw)
    with pytest.raises(ProtocolError, match=match):
        for chunk in chunks:
            dec.receive_data(chunk)
            drain(dec)
    with pytest.raises(ProtocolError, match=r"unusable after an earlier error: .*" + match):
        dec.next_event()
    with pytest.raises(ProtocolError, match="unusable"):
        dec.receive_data(encode_hangup())
    return dec


@pytest.mark.parametrize(("frame", "match"), [
    pytest.param(b"\x01\x00\x0f" + bytes(15), r"bad UUID frame \(kind 0x01, declared length 15\)"
                 r": expected a 16-byte", id="uuid15"),
    pytest.param(b"\x01\x00\x11" + bytes(17),
                 r"bad UUID frame \(kind 0x01, declared length 17\)", id="uuid17"),
    pytest.param(b"\x03\x00\x00", r"bad DTMF frame \(payload b''\) \(kind 0x03, "
                 r"declared length 0\): expected 1 ASCII", id="dtmf-empty"),
    pytest.param(b"\x03\x00\x0212",
                 r"bad DTMF frame \(payload b'12'\) \(kind 0x03, declared length 2\)", id="dtmf2"),
    pytest.param(b"\x03\x00\x01E", r"bad DTMF frame \(payload b'E'\).*0-9 \* # A-D", id="dtmfE"),
    pytest.param(b"\x03\x00\x01\xdf", r"bad DTMF frame \(payload b'\\xdf'\)", id="dtmf-nonascii"),
    pytest.param(b"\x12\x00\x03abc", r"odd-length audio payload \(kind 0x12, declared length 3\)"
                 r": expected an even", id="odd-audio"),
    pytest.param(b"\x00\x00\x01x",
                 r"hangup frame with a payload \(kind 0x00, declared length 1\)", id="hangup1"),
])
def test_malformed_frames(frame: bytes, match: str) -> None:
    expect_error([UUID_FRAME + frame], match)
    expect_error(bytewise(UUID_FRAME + frame), match)


def test_oversized_frame_fails_on_the_header_alone() -> None:
    dec = expect_error([UUID_FRAME, b"\x10\x07\xd0"],
                       r"frame too large \(kind 0x10, declared length 2000\): expected at most "
                       r"max_payload=1000", max_payload=1000)
    assert dec.buffered == 3
    expect_error([UUID_FRAME + b"\x10\x03\xe9"], r"declared length 1001\): expected at most "
                 r"max_payload=1000", max_payload=1000)
    # The limit itself is fine.
    assert feed([UUID_FRAME, encode_audio(bytes(1000))], max_payload=1000)[1:] == [
        Audio(Kind.SLIN, 8000, bytes(1000))]


def test_buffer_cap() -> None:
    frame = encode_audio(bytes(640), 16000)
    kw: dict[str, Any] = {"max_payload": 640, "max_buffer": 2 * len(frame)}
    # Reading events between receives keeps the buffer small...
    assert len(feed([frame] * 50, expect_uuid_first=False, **kw)) == 50
    # ...not reading them overflows it.
    dec = AudioSocketDecoder(expect_uuid_first=False, **kw)
    dec.receive_data(frame * 2)
    with pytest.raises(ProtocolError, match=r"would hold 1289 bytes, over max_buffer=1286: "
                                            r"call next_event\(\) until it returns NEED_DATA"):
        dec.receive_data(b"\x12\x00\x00")
    with pytest.raises(ProtocolError, match="unusable.*max_buffer"):
        dec.next_event()
    with pytest.raises(ValueError, match="max_buffer"):
        AudioSocketDecoder(max_payload=1000, max_buffer=1002)
    with pytest.raises(ValueError, match="max_payload"):
        AudioSocketDecoder(max_payload=65536)


def test_eof_mid_header_and_mid_payload() -> None:
    expect_error([UUID_FRAME + b"\x10\x01", b""],
                 r"closed mid-frame: got 2 of 3 bytes \(kind 0x10, 3-byte header incomplete\)")
    expect_error([UUID_FRAME + b"\x10\x00\x04\x01\x02", b""],
                 r"closed mid-frame: got 5 of 7 bytes \(kind 0x10, declared length 4\)")
    # Frames complete before the EOF are still delivered first.
    dec = AudioSocketDecoder()
    dec.receive_data(UUID_FRAME + b"\x10\x00")
    dec.receive_data(b"")
    assert dec.next_event() == UuidFrame(CALL_ID)
    with pytest.raises(ProtocolError, match="got 2 of 3"):
        dec.next_event()


def test_data_after_eof() -> None:
    expect_error([UUID_FRAME, b"", b"\x00\x00\x00"], r"received 3 bytes after EOF")


def test_uuid_must_come_first() -> None:
    audio = encode_audio(bytes(320))
    dec = expect_error([audio], r"first frame is not a UUID frame \(kind 0x10, declared "
                                r"length 320\): expected kind 0x01")
    assert dec.uuid is None
    expect_error(bytewise(encode_dtmf("1")), r"not a UUID frame \(kind 0x03, declared length 1\)")
    assert feed([audio], expect_uuid_first=False) == [Audio(Kind.SLIN, 8000, bytes(320))]
    # Only the first frame is checked; a later UUID is reported but does not replace it.
    other = uuid.uuid4()
    dec = AudioSocketDecoder()
    dec.receive_data(UUID_FRAME + audio + encode_uuid(other))
    assert drain(dec)[1:] == [Audio(Kind.SLIN, 8000, bytes(320)), UuidFrame(other)]
    assert dec.uuid == CALL_ID


def test_error_carries_header_fields() -> None:
    dec = AudioSocketDecoder(expect_uuid_first=False)
    dec.receive_data(b"\x13\x00\x05abcde")
    with pytest.raises(ProtocolError) as info:
        dec.next_event()
    assert (info.value.kind, info.value.length) == (0x13, 5)


# --- property tests --------------------------------------------------------------------

pcm = st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2])
events_st: st.SearchStrategy[Event] = st.one_of(
    st.just(Hangup()),
    st.uuids().map(UuidFrame),
    st.sampled_from("0123456789*#ABCD").map(Dtmf),
    st.builds(lambda k, p: Audio(k, AUDIO_RATES[k], p), st.sampled_from(list(AUDIO_RATES)), pcm),
    st.binary(max_size=4).map(lambda p: ErrorFrame(p[0] if p else None, p)),
    st.builds(UnknownFrame, st.sampled_from(UNKNOWN_KINDS), st.binary(max_size=300)),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.uuids(), events=st.lists(events_st, max_size=20),
       cuts=st.lists(st.integers(0, 50_000), max_size=30))
def test_roundtrip_any_events_any_chunking(first: uuid.UUID, events: list[Event],
                                           cuts: list[int]) -> None:
    sent = [UuidFrame(first), *events]
    stream = b"".join(encode_event(e) for e in sent)
    assert feed(chunked(stream, cuts), eof=True) == [*sent, Closed()]


# Random bytes, and near-valid streams: real frames with random bytes spliced in.
junk = st.one_of(st.binary(max_size=400), st.lists(
    st.one_of(st.binary(max_size=8), events_st.map(encode_event)), max_size=8).map(b"".join))


@settings(max_examples=300, deadline=None)
@given(data=junk, cuts=st.lists(st.integers(0, 20_000), max_size=20),
       expect_uuid=st.booleans(), max_payload=st.sampled_from([0, 16, 300, 65535]),
       eof=st.booleans())
def test_fuzz_only_protocol_errors_and_no_hang(data: bytes, cuts: list[int], expect_uuid: bool,
                                               max_payload: int, eof: bool) -> None:
    dec = AudioSocketDecoder(expect_uuid_first=expect_uuid, max_payload=max_payload)
    events: list[Event] = []
    try:
        for chunk in [*chunked(data, cuts), *([b""] if eof else [])]:
            dec.receive_data(chunk)
            # Each event consumes >= 3 bytes, so more than this many would mean a hang.
            got = list(itertools.islice(iter_events(dec), len(data) // 3 + 2))
            assert len(got) <= len(data) // 3 + 1
            events += got
    except ProtocolError:
        with pytest.raises(ProtocolError):
            dec.next_event()
        return
    if eof:
        assert events[-1] == Closed() and dec.buffered == 0
    else:
        assert dec.next_event() is NEED_DATA
    # Whatever decoded re-encodes to something that decodes the same way.
    frames = [e for e in events if not isinstance(e, Closed)]
    again = feed([b"".join(map(encode_event, frames))], expect_uuid_first=False)
    assert again == frames
