"""Sans-IO AudioSocket codec: bytes in, typed events out; events in, bytes out.

No sockets, no asyncio, no clock: the server (or a test) owns the I/O and feeds bytes
with ``receive_data`` and pulls events with ``next_event`` (the h11 shape). A frame is
1 byte kind, 2 bytes big-endian payload length, then the payload.
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, Union

__all__ = [
    "AUDIO_RATES", "NEED_DATA", "Audio", "AudioSocketDecoder", "Closed", "Dtmf", "ErrorCode",
    "ErrorFrame", "Event", "Hangup", "Kind", "ProtocolError", "Sentinel", "UnknownFrame",
    "UuidFrame", "describe_error", "encode_audio", "encode_dtmf", "encode_error",
    "encode_event", "encode_frame", "encode_hangup", "encode_uuid", "iter_events",
    "kind_for_rate",
]

HEADER_SIZE: Final = 3
MAX_PAYLOAD: Final = 0xFFFF
_HEADER = struct.Struct(">BH")
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class Kind(enum.IntEnum):
    """Frame kinds Asterisk 22 knows. Multi-rate kinds need Asterisk >= 20.17/21.12/22.7."""
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


AUDIO_RATES: Mapping[Kind, int] = MappingProxyType({
    Kind.SLIN: 8000, Kind.SLIN12: 12000, Kind.SLIN16: 16000, Kind.SLIN24: 24000,
    Kind.SLIN32: 32000, Kind.SLIN44: 44100, Kind.SLIN48: 48000, Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
})
_KIND_FOR_RATE: Final = {rate: kind for kind, rate in AUDIO_RATES.items()}
_AUDIO_BY_CODE: Final[dict[int, tuple[Kind, int]]] = {
    k.value: (k, r) for k, r in AUDIO_RATES.items()}
_KNOWN_KINDS: Final = frozenset(int(k) for k in Kind)


def kind_for_rate(sample_rate: int) -> Kind:
    """The audio frame kind for ``sample_rate``; a clear ValueError beats a silent 8 kHz."""
    try:
        return _KIND_FOR_RATE[sample_rate]
    except (KeyError, TypeError):
        rates = ", ".join(str(r) for r in sorted(_KIND_FOR_RATE))
        raise ValueError(
            f"unsupported AudioSocket sample rate {sample_rate!r}: expected one of {rates}"
        ) from None


class ErrorCode(enum.IntEnum):
    """Asterisk's error codes (AudioSocket protocol docs): one byte, bit-packed flags."""
    NONE = 0x00
    HANGUP = 0x01
    FRAME_FORWARDING = 0x02
    MEMORY = 0x04


_ERROR_TEXT: Final = {
    ErrorCode.HANGUP: "hangup of calling party",
    ErrorCode.FRAME_FORWARDING: "frame forwarding error",
    ErrorCode.MEMORY: "memory (allocation) error",
}


def describe_error(code: int | None) -> str:
    """A human-readable text for an error frame code, for logs."""
    if code is None:
        return "error frame without a code"
    if code == ErrorCode.NONE:
        return "no error (code 0x00)"
    parts = [text for bit, text in _ERROR_TEXT.items() if code & bit]
    unknown = code & ~sum(_ERROR_TEXT)
    if unknown:
        parts.append(f"unknown error bits 0x{unknown:02X}")
    return f"{' + '.join(parts)} (code 0x{code:02X})"


class ProtocolError(Exception):
    """The peer broke the protocol (or the decoder was misused): drop the connection.

    ``kind`` and ``length`` are the offending frame's header fields, when one was read."""

    def __init__(self, message: str, *, kind: int | None = None,
                 length: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.length = length


@dataclass(frozen=True, slots=True)
class Hangup:
    """0x00: the other side ends the call."""


@dataclass(frozen=True, slots=True)
class UuidFrame:
    """0x01: the call's UUID; Asterisk sends it first on every connection."""
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class Dtmf:
    """0x03: one DTMF digit (0-9 * # A-D, upper case)."""
    digit: str


@dataclass(frozen=True, slots=True)
class Audio:
    """0x10-0x18: signed 16-bit little-endian mono PCM at ``sample_rate``."""
    kind: Kind
    sample_rate: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """0xFF: an error report; ``code`` is the first payload byte, None if empty.

    ``ErrorFrame(2)`` fills in ``payload=b"\\x02"`` so it equals what the decoder returns.
    """

    code: int | None
    payload: bytes = b""

    def __post_init__(self) -> None:
        if self.code is not None and not self.payload:
            if not 0 <= self.code <= 0xFF:
                raise ValueError(f"error code must fit one byte (0..255), got {self.code}")
            object.__setattr__(self, "payload", bytes((self.code,)))  # frozen: set once here
        elif self.payload[:1] != (b"" if self.code is None else bytes((self.code,))):
            raise ValueError(f"error code {self.code} disagrees with payload {self.payload!r}")

    @property
    def description(self) -> str:
        return describe_error(self.code)


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A kind this codec does not know; reported rather than fatal so newer peers still work."""
    kind: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection (EOF) and every buffered frame was delivered."""


Event = Union[Hangup, UuidFrame, Dtmf, Audio, ErrorFrame, UnknownFrame, Closed]


class Sentinel(enum.Enum):
    """An enum member, so ``ev is NEED_DATA`` narrows the event type for mypy."""
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = Sentinel.NEED_DATA


def _fail(what: str, kind: int, length: int, expected: str) -> ProtocolError:
    return ProtocolError(
        f"{what} (kind 0x{kind:02X}, declared length {length}): expected {expected}",
        kind=kind, length=length,
    )


def _parse(kind: int, payload: bytes) -> Event:
    """Turn one complete frame into its event, validating the payload for its kind."""
    n = len(payload)
    audio = _AUDIO_BY_CODE.get(kind)
    if audio is not None:
        if n % 2:
            raise _fail("odd-length audio payload", kind, n,
                        "an even number of bytes (16-bit samples)")
        return Audio(audio[0], audio[1], payload)
    if kind == Kind.UUID:
        if n != 16:
            raise _fail("bad UUID frame", kind, n, "a 16-byte binary UUID")
        return UuidFrame(uuid.UUID(bytes=payload))
    if kind == Kind.DTMF:
        digit = chr(payload[0]).upper() if n == 1 else ""
        if digit not in DTMF_DIGITS:
            raise _fail(f"bad DTMF frame (payload {payload!r})", kind, n,
                        "1 ASCII byte among 0-9 * # A-D")
        return Dtmf(digit)
    if kind == Kind.HANGUP:
        if n:
            raise _fail("hangup frame with a payload", kind, n, "an empty payload")
        return Hangup()
    if kind == Kind.ERROR:
        return ErrorFrame(payload[0] if n else None, payload)
    return UnknownFrame(kind, payload)


class AudioSocketDecoder:
    """Buffers received bytes and parses them into events, one frame per ``next_event``.

    Any ProtocolError is final: later calls raise again rather than guess where the next
    frame starts (AudioSocket has no resync marker).
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD, max_buffer: int = 4 * 65538,
                 expect_uuid_first: bool = True) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 0..{MAX_PAYLOAD}, got {max_payload}")
        if max_buffer < max_payload + HEADER_SIZE:
            raise ValueError(f"max_buffer ({max_buffer}) must hold one largest frame "
                             f"({max_payload + HEADER_SIZE} bytes) or decoding could stall")
        self._max_payload = max_payload
        self._max_buffer = max_buffer
        self._expect_uuid = expect_uuid_first
        self._buf = bytearray()
        self._pos = 0  # consumed prefix of _buf; compacted in receive_data, not per frame
        self._eof = False
        self._closed = False
        self._seen_frame = False
        self._uuid: uuid.UUID | None = None
        self._error: ProtocolError | None = None

    @property
    def uuid(self) -> uuid.UUID | None:
        """The UUID from the first UUID frame, once decoded."""
        return self._uuid

    @property
    def closed(self) -> bool:
        """True once ``next_event`` has returned Closed."""
        return self._closed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    def _raise(self, err: ProtocolError) -> ProtocolError:
        """Remember ``err``: with no resync marker, nothing after it can be trusted."""
        self._error = err
        return err

    def _check_error(self) -> None:
        if self._error is not None:
            raise ProtocolError(f"decoder is unusable after an earlier error: {self._error}",
                                kind=self._error.kind, length=self._error.length)

    def receive_data(self, data: bytes) -> None:
        """Buffer ``data``; ``b""`` means the peer closed the connection (EOF)."""
        self._check_error()
        if not data:
            self._eof = True
            return
        if self._eof:
            raise self._raise(ProtocolError(f"received {len(data)} bytes after EOF"))
        if self.buffered + len(data) > self._max_buffer:
            raise self._raise(ProtocolError(
                f"receive buffer would hold {self.buffered + len(data)} bytes, over "
                f"max_buffer={self._max_buffer}: call next_event() until it returns NEED_DATA "
                f"between receive_data() calls, or raise max_buffer"))
        if self._pos:
            # Drop consumed bytes once per receive, not once per frame: O(leftover).
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | Literal[Sentinel.NEED_DATA]:
        """Parse one frame: an event, NEED_DATA, or Closed after EOF."""
        self._check_error()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail >= HEADER_SIZE:
            kind, length = _HEADER.unpack_from(buf, pos)
            if length > self._max_payload:
                raise self._raise(_fail("frame too large", kind, length,
                                        f"at most max_payload={self._max_payload} bytes"))
            if self._expect_uuid and not self._seen_frame and kind != Kind.UUID:
                raise self._raise(_fail("first frame is not a UUID frame", kind, length,
                                        "kind 0x01 (UUID) first on every connection"))
            end = pos + HEADER_SIZE + length
            if len(buf) >= end:
                with memoryview(buf) as view:
                    payload = bytes(view[pos + HEADER_SIZE:end])
                self._pos = end
                self._seen_frame = True
                try:
                    event = _parse(kind, payload)
                except ProtocolError as err:
                    raise self._raise(err) from None
                if isinstance(event, UuidFrame) and self._uuid is None:
                    self._uuid = event.uuid
                return event
        if not self._eof:
            return NEED_DATA
        if avail:
            kind = buf[pos]
            if avail < HEADER_SIZE:
                need, detail, length = HEADER_SIZE, "3-byte header incomplete", None
            else:
                need, detail = HEADER_SIZE + length, f"declared length {length}"
            raise self._raise(ProtocolError(
                f"connection closed mid-frame: got {avail} of {need} bytes "
                f"(kind 0x{kind:02X}, {detail})", kind=kind, length=length))
        self._closed = True
        return Closed()


def iter_events(decoder: AudioSocketDecoder) -> Iterator[Event]:
    """Yield events until the decoder needs data; Closed is the last one yielded."""
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            return
        yield event
        if isinstance(event, Closed):
            return


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One raw frame; ValueError for a kind outside 0..255 or a payload over 65535 bytes."""
    if not isinstance(kind, int) or not 0 <= kind <= 0xFF:
        raise ValueError(f"frame kind must be an int in 0..255, got {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame "
                         f"(at most {MAX_PAYLOAD}): split it into several frames")
    return _HEADER.pack(kind, len(payload)) + payload


def encode_hangup() -> bytes:
    """0x00 with no payload: asks Asterisk to end the call."""
    return encode_frame(Kind.HANGUP)


def encode_uuid(u: uuid.UUID) -> bytes:
    """0x01 with the 16-byte binary UUID (what Asterisk sends first)."""
    return encode_frame(Kind.UUID, u.bytes)


def encode_dtmf(digit: str) -> bytes:
    """0x03 with one ASCII digit; lower-case a-d is upper-cased."""
    d = digit.upper() if isinstance(digit, str) else ""
    if len(d) != 1 or d not in DTMF_DIGITS:
        raise ValueError(f"invalid DTMF digit {digit!r}: expected one of 0-9 * # A-D")
    return encode_frame(Kind.DTMF, d.encode("ascii"))


def encode_audio(pcm: bytes, sample_rate: int = 8000) -> bytes:
    """One audio frame of 16-bit LE mono ``pcm``; the kind follows ``sample_rate``."""
    kind = kind_for_rate(sample_rate)
    if len(pcm) % 2:
        raise ValueError(f"audio payload of {len(pcm)} bytes is odd: 16-bit samples need "
                         "an even length")
    return encode_frame(kind, pcm)


def encode_error(code: int) -> bytes:
    """0xFF with a one-byte error code (ValueError outside 0..255)."""
    return encode_frame(Kind.ERROR, ErrorFrame(code).payload)


def encode_event(event: Event) -> bytes:
    """The bytes that decode back to ``event``; Closed has none (close the transport)."""
    if isinstance(event, Audio):
        if AUDIO_RATES.get(event.kind) != event.sample_rate:
            raise ValueError(f"audio kind {event.kind!r} does not carry {event.sample_rate} Hz")
        return encode_audio(event.pcm, event.sample_rate)
    if isinstance(event, Dtmf):
        return encode_dtmf(event.digit)
    if isinstance(event, UuidFrame):
        return encode_uuid(event.uuid)
    if isinstance(event, Hangup):
        return encode_hangup()
    if isinstance(event, ErrorFrame):
        return encode_frame(Kind.ERROR, event.payload)
    if isinstance(event, UnknownFrame):
        if event.kind in _KNOWN_KINDS:
            raise ValueError(f"kind 0x{event.kind:02X} is known: encode its typed event")
        return encode_frame(event.kind, event.payload)
    if isinstance(event, Closed):
        raise ValueError("Closed is not a frame: close the transport (or send a Hangup)")
    raise TypeError(f"not an AudioSocket event: {event!r}")
