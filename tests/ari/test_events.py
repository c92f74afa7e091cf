"""parse_event: every typed ARI event from Asterisk-22-shaped JSON, unknown types, malformed input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ari_app.events import (
    AriEventError,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    Dial,
    PlaybackFinished,
    RecordingEvent,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    parse_event,
)

APP = "phoneagent"


def channel_json(cid: str = "1718031234.5", name: str = "PJSIP/alice-00000002", state: str = "Ring",
                 number: str = "201", caller_name: str = "Alice", context: str = "phoneagent-in",
                 exten: str = "100") -> dict[str, Any]:
    """A channel object as Asterisk 22 ARI sends it."""
    return {
        "id": cid,
        "name": name,
        "state": state,
        "protocol_id": "a1b2c3d4@192.0.2.10",
        "caller": {"name": caller_name, "number": number},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": context, "exten": exten, "priority": 3, "app_name": "Stasis",
                     "app_data": "phoneagent,inbound"},
        "creationtime": "2024-06-10T14:53:54.123+0000",
        "language": "en",
    }


def event_json(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": "2024-06-10T14:53:55.001+0000", "asterisk_id": "02:42:ac:11:00:02",
            "application": APP, **fields}


def parse_wire(message: dict[str, Any]) -> Any:
    """Through JSON text, as the WebSocket delivers it."""
    return parse_event(json.loads(json.dumps(message)))


ALICE = Channel(id="1718031234.5", name="PJSIP/alice-00000002", state="Ring", caller_number="201",
                caller_name="Alice", context="phoneagent-in", exten="100")


# --- channel ---------------------------------------------------------------------------------


def test_channel_fields_from_asterisk_json() -> None:
    assert Channel.from_json(channel_json()) == ALICE


def test_channel_with_only_an_id_gets_empty_defaults() -> None:
    assert Channel.from_json({"id": "pa-x"}) == Channel(id="pa-x", name="", state="")


def test_channel_null_caller_and_dialplan_are_empty() -> None:
    d = channel_json()
    d["caller"] = None
    d["dialplan"] = None
    ch = Channel.from_json(d)
    assert (ch.caller_number, ch.caller_name, ch.context, ch.exten) == ("", "", "", "")


# --- typed events ----------------------------------------------------------------------------


def test_stasis_start_with_args() -> None:
    msg = event_json("StasisStart", args=["inbound", "lang=en"], channel=channel_json())
    ev = parse_wire(msg)
    assert isinstance(ev, StasisStart)
    assert (ev.type, ev.application) == ("StasisStart", APP)
    assert ev.channel == ALICE
    assert ev.args == ("inbound", "lang=en")
    assert ev.replace_channel is None
    assert ev.raw == msg


def test_stasis_start_without_args_is_empty_tuple() -> None:
    ev = parse_wire(event_json("StasisStart", channel=channel_json()))
    assert isinstance(ev, StasisStart) and ev.args == ()


def test_stasis_start_args_are_strings() -> None:
    ev = parse_wire(event_json("StasisStart", args=[1, "x"], channel=channel_json()))
    assert isinstance(ev, StasisStart) and ev.args == ("1", "x")


def test_stasis_start_with_replace_channel() -> None:
    old = channel_json(cid="1718031234.9", name="Local/200@phoneagent-test-00000001;2", state="Up")
    ev = parse_wire(event_json("StasisStart", args=[], channel=channel_json(state="Up"), replace_channel=old))
    assert isinstance(ev, StasisStart)
    assert ev.replace_channel is not None
    assert ev.replace_channel.id == "1718031234.9"
    assert ev.replace_channel.name == "Local/200@phoneagent-test-00000001;2"
    assert ev.channel.state == "Up"


def test_stasis_end() -> None:
    ev = parse_wire(event_json("StasisEnd", channel=channel_json(state="Up")))
    assert isinstance(ev, StasisEnd)
    assert ev.channel.id == ALICE.id and ev.channel.state == "Up"


def test_channel_dtmf_received() -> None:
    ev = parse_wire(event_json("ChannelDtmfReceived", digit="5", duration_ms=120, channel=channel_json(state="Up")))
    assert isinstance(ev, ChannelDtmfReceived)
    assert (ev.digit, ev.duration_ms, ev.channel.id) == ("5", 120, ALICE.id)


def test_channel_dtmf_without_duration_is_zero() -> None:
    ev = parse_wire(event_json("ChannelDtmfReceived", digit="#", channel=channel_json()))
    assert isinstance(ev, ChannelDtmfReceived) and ev.duration_ms == 0


def test_channel_hangup_request() -> None:
    ev = parse_wire(event_json("ChannelHangupRequest", cause=16, soft=False, channel=channel_json(state="Up")))
    assert isinstance(ev, ChannelHangupRequest)
    assert (ev.cause, ev.channel.id) == (16, ALICE.id)


def test_channel_hangup_request_without_cause_is_zero() -> None:
    ev = parse_wire(event_json("ChannelHangupRequest", channel=channel_json()))
    assert isinstance(ev, ChannelHangupRequest) and ev.cause == 0


def test_channel_destroyed() -> None:
    ev = parse_wire(event_json("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=channel_json(state="Up")))
    assert isinstance(ev, ChannelDestroyed)
    assert (ev.cause, ev.cause_txt, ev.channel.id) == (16, "Normal Clearing", ALICE.id)


def test_channel_state_change() -> None:
    ev = parse_wire(event_json("ChannelStateChange", channel=channel_json(state="Up")))
    assert isinstance(ev, ChannelStateChange) and ev.channel.state == "Up"


def bridge_json(bid: str = "pa-b-1718031234.5") -> dict[str, Any]:
    return {"id": bid, "technology": "simple_bridge", "bridge_type": "mixing", "bridge_class": "stasis",
            "creator": "Stasis", "name": bid, "channels": ["1718031234.5"], "creationtime": "2024-06-10T14:53:55.000+0000",
            "video_mode": "none"}


@pytest.mark.parametrize("kind, cls", [("ChannelEnteredBridge", ChannelEnteredBridge),
                                       ("ChannelLeftBridge", ChannelLeftBridge)])
def test_channel_entered_and_left_bridge(kind: str, cls: type[ChannelEnteredBridge | ChannelLeftBridge]) -> None:
    ev = parse_event(event_json(kind, bridge=bridge_json(), channel=channel_json(state="Up")))
    assert type(ev) is cls
    assert isinstance(ev, (ChannelEnteredBridge, ChannelLeftBridge))
    assert ev.bridge_id == "pa-b-1718031234.5"
    assert ev.channel.id == ALICE.id


def test_dial_uses_peer_and_dialstatus() -> None:
    peer = channel_json(cid="pa-h-1", name="PJSIP/200-00000003", state="Ringing", number="200", caller_name="")
    ev = parse_wire(event_json("Dial", caller=channel_json(state="Up"), peer=peer, dialstring="200", dialstatus="ANSWER"))
    assert isinstance(ev, Dial)
    assert (ev.peer.id, ev.peer.name, ev.dialstatus) == ("pa-h-1", "PJSIP/200-00000003", "ANSWER")


def test_dial_ringing_has_empty_dialstatus() -> None:
    ev = parse_wire(event_json("Dial", peer=channel_json(cid="pa-h-1"), dialstatus=""))
    assert isinstance(ev, Dial) and ev.dialstatus == ""


def test_playback_finished() -> None:
    pb = {"id": "pa-pb-7", "media_uri": "sound:hello-world", "target_uri": "channel:1718031234.5",
          "language": "en", "state": "done"}
    ev = parse_wire(event_json("PlaybackFinished", playback=pb))
    assert isinstance(ev, PlaybackFinished)
    assert (ev.playback_id, ev.target_uri, ev.state) == ("pa-pb-7", "channel:1718031234.5", "done")


def recording_json(**extra: Any) -> dict[str, Any]:
    return {"name": "phoneagent/2024-06-10/call-1", "format": "wav", "state": "recording",
            "target_uri": "bridge:pa-b-1718031234.5", **extra}


def test_recording_started_has_no_duration() -> None:
    ev = parse_wire(event_json("RecordingStarted", recording=recording_json()))
    assert isinstance(ev, RecordingEvent)
    assert ev.type == "RecordingStarted"
    assert (ev.name, ev.format, ev.target_uri, ev.state) == (
        "phoneagent/2024-06-10/call-1", "wav", "bridge:pa-b-1718031234.5", "recording")
    assert ev.duration_s is None and ev.cause == ""


@pytest.mark.parametrize("duration, expected", [(42, 42.0), (1.5, 1.5), (0, 0.0)])
def test_recording_finished_with_duration(duration: float, expected: float) -> None:
    rec = recording_json(state="done", duration=duration, talking_duration=30, silence_duration=12)
    ev = parse_wire(event_json("RecordingFinished", recording=rec))
    assert isinstance(ev, RecordingEvent) and ev.type == "RecordingFinished"
    assert ev.state == "done"
    assert ev.duration_s == expected and isinstance(ev.duration_s, float)


def test_recording_finished_with_non_numeric_duration_is_none() -> None:
    ev = parse_wire(event_json("RecordingFinished", recording=recording_json(state="done", duration="42")))
    assert isinstance(ev, RecordingEvent) and ev.duration_s is None


def test_recording_failed_has_cause() -> None:
    rec = recording_json(state="failed", cause="Could not open file")
    ev = parse_wire(event_json("RecordingFailed", recording=rec))
    assert isinstance(ev, RecordingEvent) and ev.type == "RecordingFailed"
    assert (ev.state, ev.cause, ev.duration_s) == ("failed", "Could not open file", None)


def test_unknown_type_is_unknown_event_not_an_error() -> None:
    msg = event_json("ChannelVarset", variable="FOO", value="bar", channel=channel_json())
    ev = parse_wire(msg)
    assert type(ev) is UnknownEvent
    assert (ev.type, ev.application, ev.raw) == ("ChannelVarset", APP, msg)


def test_event_without_application_has_empty_application() -> None:
    ev = parse_event({"type": "ApplicationReplaced"})
    assert type(ev) is UnknownEvent and ev.application == ""


def test_raw_is_not_part_of_equality_or_repr() -> None:
    a = parse_event(event_json("StasisEnd", channel=channel_json()))
    b_msg = event_json("StasisEnd", channel=channel_json())
    b_msg["timestamp"] = "2030-01-01T00:00:00.000+0000"
    assert a == parse_event(b_msg)
    assert "timestamp" not in repr(a)


def test_parse_does_not_modify_its_input() -> None:
    msg = event_json("StasisStart", args=["inbound"], channel=channel_json())
    before = copy.deepcopy(msg)
    parse_event(msg)
    assert msg == before


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize("message, got", [(None, "NoneType"), ([], "list"), ("StasisStart", "str"), (42, "int")])
def test_not_an_object(message: object, got: str) -> None:
    with pytest.raises(AriEventError, match=f"ARI event must be a JSON object, got {got}"):
        parse_event(message)


@pytest.mark.parametrize("message", [{}, {"type": ""}, {"type": None}, {"type": 7}, {"application": APP}])
def test_no_type(message: dict[str, Any]) -> None:
    with pytest.raises(AriEventError, match="ARI event has no 'type'"):
        parse_event(message)


@pytest.mark.parametrize("kind", ["StasisStart", "StasisEnd", "ChannelDtmfReceived", "ChannelHangupRequest",
                                  "ChannelDestroyed", "ChannelStateChange"])
def test_channel_missing(kind: str) -> None:
    with pytest.raises(AriEventError, match="ARI channel must be a JSON object, got NoneType"):
        parse_event({"type": kind, "application": APP, "digit": "1"})


@pytest.mark.parametrize("bad_id", [None, "", 5])
def test_channel_without_id(bad_id: object) -> None:
    ch = channel_json()
    if bad_id is None:
        del ch["id"]
    else:
        ch["id"] = bad_id
    with pytest.raises(AriEventError, match="ARI channel has no 'id'"):
        parse_event(event_json("StasisStart", args=[], channel=ch))


def test_replace_channel_without_id() -> None:
    with pytest.raises(AriEventError, match="ARI channel has no 'id'"):
        parse_event(event_json("StasisStart", channel=channel_json(), replace_channel={"name": "Local/x"}))


def test_dial_without_peer() -> None:
    with pytest.raises(AriEventError, match="ARI channel must be a JSON object"):
        parse_event(event_json("Dial", caller=channel_json(), dialstatus="ANSWER"))


@pytest.mark.parametrize("args", ["inbound", {"a": 1}, 3])
def test_stasis_start_args_not_a_list(args: object) -> None:
    with pytest.raises(AriEventError, match="StasisStart args must be a list"):
        parse_event(event_json("StasisStart", args=args, channel=channel_json()))


def test_dtmf_without_digit() -> None:
    with pytest.raises(AriEventError, match="ARI ChannelDtmfReceived has no 'digit'"):
        parse_event(event_json("ChannelDtmfReceived", channel=channel_json()))


@pytest.mark.parametrize("kind", ["ChannelEnteredBridge", "ChannelLeftBridge"])
def test_bridge_missing_or_without_id(kind: str) -> None:
    with pytest.raises(AriEventError, match="ARI bridge must be a JSON object, got NoneType"):
        parse_event(event_json(kind, channel=channel_json()))
    bridge = bridge_json()
    del bridge["id"]
    with pytest.raises(AriEventError, match="ARI bridge has no 'id'"):
        parse_event(event_json(kind, bridge=bridge, channel=channel_json()))


def test_playback_without_id() -> None:
    with pytest.raises(AriEventError, match="ARI playback has no 'id'"):
        parse_event(event_json("PlaybackFinished", playback={"state": "done"}))


@pytest.mark.parametrize("kind", ["RecordingStarted", "RecordingFinished", "RecordingFailed"])
def test_recording_missing_or_without_name(kind: str) -> None:
    with pytest.raises(AriEventError, match="ARI recording must be a JSON object"):
        parse_event(event_json(kind))
    with pytest.raises(AriEventError, match="ARI recording has no 'name'"):
        parse_event(event_json(kind, recording={"format": "wav", "state": "done"}))


def test_error_is_a_value_error() -> None:
    """Callers (the event stream) catch ValueError, which also covers json.JSONDecodeError."""
    assert issubclass(AriEventError, ValueError)


@pytest.mark.parametrize("kind, field_name", [("ChannelDtmfReceived", "duration_ms"),
                                              ("ChannelHangupRequest", "cause"),
                                              ("ChannelDestroyed", "cause")])
def test_null_numeric_field_is_an_ari_event_error(kind: str, field_name: str) -> None:
    msg = event_json(kind, digit="1", channel=channel_json())
    msg[field_name] = None
    with pytest.raises(AriEventError, match=field_name):
        parse_event(msg)


def test_non_numeric_numeric_field_is_an_ari_event_error() -> None:
    msg = event_json("ChannelDtmfReceived", digit="1", duration_ms="long", channel=channel_json())
    with pytest.raises(AriEventError, match="duration_ms"):
        parse_event(msg)
