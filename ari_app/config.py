"""What the ARI controller does with a call, per deployment (agent): media, recording, transfers.

Validation happens here, at start-up, so a bad value is a clear error before the first call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_NAME_RE = re.compile(r"^[A-Za-z0-9_./{}-]+$")
FORMATS = ("wav", "wav16", "gsm", "ulaw", "alaw", "sln", "sln16")


@dataclass(frozen=True)
class RecordingConfig:
    """Asterisk records the agent's bridge (caller and agent, later caller and human).

    `name` is a template ({call_id}, {date}); Asterisk writes <spool_dir>/<name>.<format>.
    Disable it per agent where consent rules require; `notice` is spoken first when set.
    """

    enabled: bool = True
    media_format: str = "wav"
    name: str = "phoneagent/{date}/{call_id}"
    spool_dir: str = "/var/spool/asterisk/recording"
    notice: str | None = None

    def __post_init__(self) -> None:
        if self.media_format not in FORMATS:
            raise ValueError(f"recording format {self.media_format!r} is not one of {FORMATS}")
        if not _NAME_RE.match(self.name) or ".." in self.name or self.name.startswith("/"):
            raise ValueError(f"recording name template {self.name!r}: use letters, digits, _-./ and {{call_id}} {{date}}")
        try:
            self.name.format(call_id="x", date="x")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"recording name template {self.name!r}: unknown field {exc}") from None
        if "{call_id}" not in self.name:
            raise ValueError(f"recording name template {self.name!r} needs {{call_id}}: one file per call")

    def file_name(self, call_id: str, date: str) -> str:
        return self.name.format(call_id=call_id, date=date)

    def path(self, name: str) -> str:
        ext = "wav" if self.media_format == "wav16" else self.media_format
        return f"{self.spool_dir.rstrip('/')}/{name}.{ext}"


@dataclass(frozen=True)
class TransferConfig:
    """Where a caller goes when they want a person.

    Warm: `human_endpoint` (e.g. PJSIP/200, Local/queue@ctx) is dialled, hears the summary and
    presses 1 to take the call or 2 to decline. Blind: the caller continues in the dialplan at
    `blind_context`,`blind_extension` (a queue, an operator).
    """

    mode: str = "warm"  # warm | blind
    human_endpoint: str = ""
    blind_context: str = ""
    blind_extension: str = ""
    ring_timeout_s: int = 20
    accept_timeout_s: float = 10.0  # after the summary ends
    caller_id: str = "Phone agent"
    moh_class: str = "default"
    intro: str = "Hello, this is the phone agent with a caller for you."
    prompt: str = "Press 1 to take the call, or 2 to decline."

    def __post_init__(self) -> None:
        if self.mode not in ("warm", "blind"):
            raise ValueError(f"transfer mode must be 'warm' or 'blind', got {self.mode!r}")
        if not math.isfinite(self.accept_timeout_s) or self.ring_timeout_s <= 0 or self.accept_timeout_s <= 0:
            raise ValueError("transfer timeouts must be > 0")

    @property
    def target(self) -> str:
        """Where a transfer goes, as the record shows it: the endpoint dialled, or context,extension."""
        if not self.available:
            return ""
        return self.human_endpoint if self.mode == "warm" else f"{self.blind_context},{self.blind_extension}"

    @property
    def available(self) -> bool:
        if self.mode == "warm":
            return bool(self.human_endpoint)
        return bool(self.blind_context and self.blind_extension)


@dataclass(frozen=True)
class CallProfile:
    """What one agent asks of the telephony side: its recording and where its callers go."""

    recording: RecordingConfig = field(default_factory=RecordingConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass(frozen=True)
class ControllerConfig:
    """`audiosocket_address` is where ASTERISK reaches our AudioSocket server (host:port).
    `agents`: each agent's own profile, by the name the dialplan gives (Stasis(app,inbound,NAME));
    a call with no or an unknown name gets `recording` and `transfer` here."""

    audiosocket_address: str = "127.0.0.1:9092"
    media_format: str = "slin16"
    connect_timeout_s: float = 5.0  # externalMedia in Stasis and its AudioSocket connected
    ring_while_connecting: bool = True
    fallback_context: str = ""  # where the caller goes if the agent cannot take the call
    fallback_extension: str = ""
    id_prefix: str = "pa-"  # channels and bridges we create; the start-up sweep removes leftovers
    # While we have a call, Asterisk holds a hang-up deadline on the caller's channel, renewed
    # every lease_s/3 (lease.py): if the service dies, Asterisk frees the caller within this. 0: off.
    lease_s: float = 15.0
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    agents: Mapping[str, CallProfile] = field(default_factory=dict)

    def profile(self, agent: str) -> CallProfile:
        return self.agents.get(agent) or CallProfile(self.recording, self.transfer)

    def __post_init__(self) -> None:
        host, sep, port = self.audiosocket_address.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
            raise ValueError(f"audiosocket_address must be host:port, got {self.audiosocket_address!r}")
        if not math.isfinite(self.connect_timeout_s) or self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        if self.media_format not in ("slin", "slin16"):
            raise ValueError(f"media_format must be slin or slin16, got {self.media_format!r}")
        if not re.match(r"^[a-z][a-z0-9-]*$", self.id_prefix):
            raise ValueError(f"id_prefix must be lower-case letters, digits and '-', got {self.id_prefix!r}")
        if not math.isfinite(self.lease_s) or not (self.lease_s == 0 or self.lease_s >= 3):
            raise ValueError(f"lease_s must be 0 (off) or >= 3 seconds, got {self.lease_s}")
        if bool(self.fallback_context) != bool(self.fallback_extension):
            raise ValueError("set both fallback_context and fallback_extension, or neither")
