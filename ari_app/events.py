"""Typed ARI events, parsed from the JSON the event WebSocket sends (sans-IO: dict in, event out).

Only the fields the controller acts on are typed; `raw` keeps the whole message for logs.
Unknown event types become `UnknownEvent`, never an error: Asterisk adds events over time.
Malformed messages (not an object, no `type`, a required field missing) raise `AriEventError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AriEventError(ValueError):
    """A WebSocket message that is not a well-formed ARI event."""


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    state: str
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""

    @classmethod
    def from_json(cls, data: object) -> Channel:
        d = _obj(data, "channel")
        caller = d.get("caller") or {}
        plan = d.get("dialplan") or {}
        return cls(id=_str(d, "id", "channel"), name=str(d.get("name", "")), state=str(d.get("state", "")),
                   caller_number=str(caller.get("number", "")), caller_name=str(caller.get("name", "")),
                   context=str(plan.get("context", "")), exten=str(plan.get("exten", "")))


@dataclass(frozen=True)
class AriEvent:
    type: str
    application: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class StasisStart(AriEvent):
    channel: Channel
    args: tuple[str, ...]
    replace_channel: Channel | None = None


@dataclass(frozen=True)
class StasisEnd(AriEvent):
    channel: Channel


@dataclass(frozen=True)
class ChannelDtmfReceived(AriEvent):
    channel: Channel
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class ChannelHangupRequest(AriEvent):
    channel: Channel
    cause: int


@dataclass(frozen=True)
class ChannelDestroyed(AriEvent):
    channel: Channel
    cause: int
    cause_txt: str


@dataclass(frozen=True)
class ChannelStateChange(AriEvent):
    channel: Channel


@dataclass(frozen=True)
class ChannelEnteredBridge(AriEvent):
    bridge_id: str
    channel: Channel


@dataclass(frozen=True)
class ChannelLeftBridge(AriEvent):
    bridge_id: str
    channel: Channel


@dataclass(frozen=True)
class Dial(AriEvent):
    """Progress of an originate/dial: dialstatus "" (ringing), ANSWER, BUSY, NOANSWER, ..."""

    peer: Channel
    dialstatus: str


@dataclass(frozen=True)
class PlaybackFinished(AriEvent):
    playback_id: str
    target_uri: str
    state: str


@dataclass(frozen=True)
class RecordingEvent(AriEvent):
    """RecordingStarted / RecordingFinished / RecordingFailed (`type` says which)."""

    name: str
    format: str
    target_uri: str
    state: str
    duration_s: float | None
    cause: str


@dataclass(frozen=True)
class CallBroadcast(AriEvent):
    """StasisBroadcast() offers `channel` to every matching app; the first to claim it gets it."""

    channel: Channel
    caller: str
    called: str


@dataclass(frozen=True)
class UnknownEvent(AriEvent):
    pass


def parse_event(message: object) -> AriEvent:
    """One decoded WebSocket message -> a typed event."""
    d = _obj(message, "event")
    kind = _str(d, "type", "event")
    app = str(d.get("application", ""))
    if kind == "StasisStart":
        replace = d.get("replace_channel")
        args = d.get("args") or []
        if not isinstance(args, list):
            raise AriEventError(f"StasisStart args must be a list, got {args!r}")
        return StasisStart(kind, app, d, Channel.from_json(d.get("channel")), tuple(str(a) for a in args),
                           Channel.from_json(replace) if replace else None)
    if kind == "CallBroadcast":
        return CallBroadcast(kind, app, d, Channel.from_json(d.get("channel")), str(d.get("caller") or ""),
                             str(d.get("called") or ""))
    if kind == "StasisEnd":
        return StasisEnd(kind, app, d, Channel.from_json(d.get("channel")))
    if kind == "ChannelDtmfReceived":
        return ChannelDtmfReceived(kind, app, d, Channel.from_json(d.get("channel")), _str(d, "digit", kind),
                                   _int(d, "duration_ms", kind))
    if kind == "ChannelHangupRequest":
        return ChannelHangupRequest(kind, app, d, Channel.from_json(d.get("channel")), _int(d, "cause", kind))
    if kind == "ChannelDestroyed":
        return ChannelDestroyed(kind, app, d, Channel.from_json(d.get("channel")), _int(d, "cause", kind),
                                str(d.get("cause_txt", "")))
    if kind == "ChannelStateChange":
        return ChannelStateChange(kind, app, d, Channel.from_json(d.get("channel")))
    if kind in ("ChannelEnteredBridge", "ChannelLeftBridge"):
        bridge = _obj(d.get("bridge"), "bridge")
        cls = ChannelEnteredBridge if kind == "ChannelEnteredBridge" else ChannelLeftBridge
        return cls(kind, app, d, _str(bridge, "id", "bridge"), Channel.from_json(d.get("channel")))
    if kind == "Dial":
        return Dial(kind, app, d, Channel.from_json(d.get("peer")), str(d.get("dialstatus", "")))
    if kind == "PlaybackFinished":
        pb = _obj(d.get("playback"), "playback")
        return PlaybackFinished(kind, app, d, _str(pb, "id", "playback"), str(pb.get("target_uri", "")),
                                str(pb.get("state", "")))
    if kind in ("RecordingStarted", "RecordingFinished", "RecordingFailed"):
        rec = _obj(d.get("recording"), "recording")
        duration = rec.get("duration")
        return RecordingEvent(kind, app, d, _str(rec, "name", "recording"), str(rec.get("format", "")),
                              str(rec.get("target_uri", "")), str(rec.get("state", "")),
                              float(duration) if isinstance(duration, (int, float)) else None,
                              str(rec.get("cause", "")))
    return UnknownEvent(kind, app, d)


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AriEventError(f"ARI {what} must be a JSON object, got {type(value).__name__}")
    return value


def _int(d: dict[str, Any], key: str, what: str) -> int:
    value = d.get(key, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AriEventError(f"ARI {what} has a non-integer {key!r} (got {value!r})") from None


def _str(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise AriEventError(f"ARI {what} has no {key!r} (got {value!r})")
    return value
