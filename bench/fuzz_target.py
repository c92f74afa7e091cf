"""The libFuzzer target for the AudioSocket codec (run by bench/fuzz_audiosocket.py, which
reports; never imported by the product). The input picks the decoder's limits and how the
bytes are cut into reads, then everything left is the byte stream from "Asterisk".

Checked on every input, beyond "no exception but ProtocolError":
- the decoder's buffer never exceeds its max_buffer (memory stays bounded);
- after a ProtocolError every later call raises again (no guessing at the next frame);
- every event decoded re-encodes to a frame that decodes to the same event;
- after EOF the decoder ends in Closed or a ProtocolError (a truncated frame), never hangs.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from audiosocket import protocol as p


def _check_round_trip(ev: object) -> None:
    if isinstance(ev, (p.Audio, p.Dtmf, p.Hangup, p.ErrorFrame, p.UnknownFrame, p.UuidFrame)):
        again = p.AudioSocketDecoder(expect_uuid_first=False)
        again.receive_data(p.encode_event(ev))
        assert again.next_event() == ev, ev


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    uuid_first = fdp.ConsumeBool()
    max_payload = fdp.PickValueInList([p.MAX_PAYLOAD, 640, 16, 0])
    max_buffer = max(max_payload + p.HEADER_SIZE, fdp.ConsumeIntInRange(0, 4 * 65538))
    cuts = [fdp.ConsumeIntInRange(0, 300) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    dec = p.AudioSocketDecoder(max_payload=max_payload, max_buffer=max_buffer, expect_uuid_first=uuid_first)
    chunks, at = [], 0
    for n in cuts:
        chunks.append(stream[at:at + n])
        at += n
    chunks.append(stream[at:])
    try:
        for chunk in [*chunks, b""]:  # b"": EOF
            dec.receive_data(chunk)
            assert dec.buffered <= max_buffer, (dec.buffered, max_buffer)
            while (ev := dec.next_event()) is not p.NEED_DATA:
                _check_round_trip(ev)
                if isinstance(ev, p.Closed):
                    return
        raise AssertionError("no Closed after EOF")
    except p.ProtocolError:
        try:
            dec.next_event()
        except p.ProtocolError:
            return
        raise AssertionError("the decoder went on after a ProtocolError") from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
