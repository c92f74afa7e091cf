"""Start-up validation of the controller's config (recording, transfer, controller) and AriConfig."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from ari_app.client import AriConfig, basic_auth
from ari_app.config import FORMATS, ControllerConfig, RecordingConfig, TransferConfig

# --- RecordingConfig -------------------------------------------------------------------------


def test_recording_defaults() -> None:
    r = RecordingConfig()
    assert r.enabled and r.media_format == "wav" and r.notice is None
    assert r.file_name("call-1", "2024-06-10") == "phoneagent/2024-06-10/call-1"
    assert r.path("phoneagent/2024-06-10/call-1") == "/var/spool/asterisk/recording/phoneagent/2024-06-10/call-1.wav"


@pytest.mark.parametrize("fmt", FORMATS)
def test_recording_accepts_every_asterisk_format(fmt: str) -> None:
    assert RecordingConfig(media_format=fmt).media_format == fmt


@pytest.mark.parametrize("fmt", ["mp3", "WAV", "", "slin16", ".wav", "wav "])
def test_recording_rejects_other_formats(fmt: str) -> None:
    with pytest.raises(ValueError, match=f"recording format {fmt!r} is not one of"):
        RecordingConfig(media_format=fmt)


@pytest.mark.parametrize("name", ["phoneagent/{date}/{call_id}", "{call_id}", "rec-{date}_{call_id}.v1",
                                  "a/b/c/{call_id}"])
def test_recording_accepts_name_templates(name: str) -> None:
    assert RecordingConfig(name=name).name == name


def test_recording_name_needs_the_call_id() -> None:
    """A fixed name would overwrite every earlier call's recording (ifExists=overwrite)."""
    with pytest.raises(ValueError, match="needs {call_id}"):
        RecordingConfig(name="fixed/{date}")


@pytest.mark.parametrize("name", ["", "../{call_id}", "a/../../etc/{call_id}", "x..y", "/var/tmp/{call_id}",
                                  "a b/{call_id}", "a;rm/{call_id}", "{call_id!r}", "{call_id:>8}", "{date[0]}",
                                  "\u00e9/{call_id}", "a\\{call_id}"])
def test_recording_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(ValueError, match="recording name template .*use letters, digits"):
        RecordingConfig(name=name)


@pytest.mark.parametrize("name, detail", [("{caller}", "'caller'"), ("{0}", "index 0"), ("{}", "index 0"),
                                          ("x/{", "Single '{'"), ("x}", "Single '}'")])
def test_recording_rejects_unknown_fields(name: str, detail: str) -> None:
    with pytest.raises(ValueError, match=f"unknown field .*{detail}"):
        RecordingConfig(name=name)


@pytest.mark.parametrize("name", ["{date.year}/{call_id}", "{call_id.hex}"])
def test_recording_rejects_attribute_fields_with_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="recording name template"):
        RecordingConfig(name=name)


def test_recording_file_name_and_path() -> None:
    r = RecordingConfig(name="calls/{date}/{call_id}", spool_dir="/srv/rec/", media_format="gsm")
    name = r.file_name("pa-3f2a", "2024-06-10")
    assert name == "calls/2024-06-10/pa-3f2a"
    assert r.path(name) == "/srv/rec/calls/2024-06-10/pa-3f2a.gsm"  # one slash: the trailing one is stripped


@pytest.mark.parametrize("fmt, ext", [("wav", "wav"), ("wav16", "wav"), ("sln16", "sln16"), ("ulaw", "ulaw"),
                                      ("alaw", "alaw"), ("sln", "sln"), ("gsm", "gsm")])
def test_recording_path_extension(fmt: str, ext: str) -> None:
    """Asterisk writes wav16 recordings with a .wav extension."""
    assert RecordingConfig(media_format=fmt).path("x/y") == f"/var/spool/asterisk/recording/x/y.{ext}"


def test_recording_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RecordingConfig().name = "other"  # type: ignore[misc]


# --- TransferConfig --------------------------------------------------------------------------


def test_transfer_defaults_are_warm_and_unavailable() -> None:
    t = TransferConfig()
    assert t.mode == "warm" and not t.available


@pytest.mark.parametrize("mode", ["Warm", "attended", "", "cold"])
def test_transfer_rejects_unknown_mode(mode: str) -> None:
    with pytest.raises(ValueError, match=f"transfer mode must be 'warm' or 'blind', got {mode!r}"):
        TransferConfig(mode=mode)


@pytest.mark.parametrize("ring, accept", [(0, 10.0), (-1, 10.0), (20, 0.0), (20, -0.5)])
def test_transfer_rejects_non_positive_timeouts(ring: int, accept: float) -> None:
    with pytest.raises(ValueError, match="transfer timeouts must be > 0"):
        TransferConfig(ring_timeout_s=ring, accept_timeout_s=accept)


def test_transfer_warm_available_needs_endpoint() -> None:
    assert TransferConfig(mode="warm", human_endpoint="PJSIP/200").available
    assert not TransferConfig(mode="warm", blind_context="ops", blind_extension="100").available


@pytest.mark.parametrize("context, exten, available", [("operators", "100", True), ("operators", "", False),
                                                       ("", "100", False), ("", "", False)])
def test_transfer_blind_available_needs_context_and_extension(context: str, exten: str, available: bool) -> None:
    t = TransferConfig(mode="blind", human_endpoint="PJSIP/200", blind_context=context, blind_extension=exten)
    assert t.available is available


# --- ControllerConfig ------------------------------------------------------------------------


def test_controller_defaults() -> None:
    c = ControllerConfig()
    assert (c.audiosocket_address, c.media_format, c.id_prefix) == ("127.0.0.1:9092", "slin16", "pa-")
    assert isinstance(c.recording, RecordingConfig) and isinstance(c.transfer, TransferConfig)
    assert c.recording == RecordingConfig() and c.transfer == TransferConfig()


@pytest.mark.parametrize("address", ["127.0.0.1:9092", "agent.example.org:40000", "[::1]:9092", "10.0.0.5:1"])
def test_controller_accepts_host_port(address: str) -> None:
    assert ControllerConfig(audiosocket_address=address).audiosocket_address == address


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", ":9092", "host:port", "host:-1", "", "host:90 92"])
def test_controller_rejects_bad_address(address: str) -> None:
    with pytest.raises(ValueError, match=f"audiosocket_address must be host:port, got {address!r}"):
        ControllerConfig(audiosocket_address=address)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:\uff19\uff10"])
def test_controller_rejects_out_of_range_port(address: str) -> None:
    with pytest.raises(ValueError, match="audiosocket_address must be host:port"):
        ControllerConfig(audiosocket_address=address)


@pytest.mark.parametrize("fmt", ["slin", "slin16"])
def test_controller_media_formats(fmt: str) -> None:
    assert ControllerConfig(media_format=fmt).media_format == fmt


@pytest.mark.parametrize("fmt", ["ulaw", "slin48", "SLIN16", ""])
def test_controller_rejects_media_format(fmt: str) -> None:
    with pytest.raises(ValueError, match=f"media_format must be slin or slin16, got {fmt!r}"):
        ControllerConfig(media_format=fmt)


@pytest.mark.parametrize("prefix", ["pa-", "agent2-", "x"])
def test_controller_accepts_id_prefix(prefix: str) -> None:
    assert ControllerConfig(id_prefix=prefix).id_prefix == prefix


@pytest.mark.parametrize("prefix", ["", "PA-", "-pa", "1pa", "pa_", "pa.", "pa;"])
def test_controller_rejects_id_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="id_prefix must be lower-case letters"):
        ControllerConfig(id_prefix=prefix)


def test_controller_fallback_pair() -> None:
    c = ControllerConfig(fallback_context="operators", fallback_extension="100")
    assert (c.fallback_context, c.fallback_extension) == ("operators", "100")
    for context, exten in (("operators", ""), ("", "100")):
        with pytest.raises(ValueError, match="set both fallback_context and fallback_extension, or neither"):
            ControllerConfig(fallback_context=context, fallback_extension=exten)


def test_controller_nested_configs_are_validated_when_built() -> None:
    with pytest.raises(ValueError, match="transfer mode"):
        ControllerConfig(transfer=TransferConfig(mode="cold"))


# --- AriConfig and basic_auth ----------------------------------------------------------------


def test_ari_config_defaults_and_password_not_in_repr() -> None:
    c = AriConfig(password="s3cret")
    assert (c.url, c.user, c.app) == ("http://127.0.0.1:8088", "phoneagent", "phoneagent")
    assert "s3cret" not in repr(c)


@pytest.mark.parametrize("url", ["http://pbx:8088", "https://pbx.example.org"])
def test_ari_config_accepts_http_urls(url: str) -> None:
    assert AriConfig(url=url).url == url


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8088", "127.0.0.1:8088", "", "HTTP://pbx:8088", "ftp://pbx"])
def test_ari_config_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="ARI url must start with http:// or https://"):
        AriConfig(url=url)


@pytest.mark.parametrize("app", ["", "a,b"])
def test_ari_config_rejects_app_name(app: str) -> None:
    with pytest.raises(ValueError, match="ARI app name must be non-empty without commas"):
        AriConfig(app=app)


@pytest.mark.parametrize("kw", [{"request_timeout_s": 0.0}, {"request_timeout_s": -1.0}, {"heartbeat_s": 0.0},
                                {"heartbeat_s": -5.0}])
def test_ari_config_rejects_non_positive_timeouts(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ARI timeouts must be > 0"):
        AriConfig(**kw)


@pytest.mark.parametrize("user, password", [("phoneagent", "s3cret"), ("u", ""), ("user", "p:a:ss"),
                                            ("j\u00f6rg", "p\u00e4ss w\u00f6rd")])
def test_basic_auth_is_base64_of_user_colon_password(user: str, password: str) -> None:
    value = basic_auth(user, password)
    assert value.startswith("Basic ")
    assert base64.b64decode(value.removeprefix("Basic ")).decode("utf-8") == f"{user}:{password}"
    assert value == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_known_value() -> None:
    assert basic_auth("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="  # RFC 7617 example
