"""The Asterisk test bed: pure helpers without Asterisk, then the real bed end to end."""

from __future__ import annotations

import math
import os
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest

from devtools import testbed, testbed_ari
from devtools.testbed import AsteriskBed
from tests.fixtures_asterisk import checked_bed

FRAME = 640  # 20 ms of slin16


# --- without Asterisk -------------------------------------------------------------------

def test_host_path_follows_chroot_symlinks(tmp_path: Path) -> None:
    (tmp_path / "run/asterisk").mkdir(parents=True)
    (tmp_path / "var").mkdir()
    (tmp_path / "var/run").symlink_to("/run")  # absolute, as in Debian
    (tmp_path / "var/lock").symlink_to("../run/lock")
    bed = AsteriskBed(root=tmp_path)
    assert bed.host_path("/var/run/asterisk/asterisk.ctl") == tmp_path / "run/asterisk/asterisk.ctl"
    assert bed.host_path("/var/lock/x") == tmp_path / "run/lock/x"
    assert bed.host_path("/tmp/../etc/asterisk") == tmp_path / "etc/asterisk"
    assert AsteriskBed(root=None).host_path("/var/run/x") == Path("/var/run/x")


def test_debian_mirror_from_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHONEAGENT_DEBIAN_MIRROR", raising=False)
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian-security\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert testbed.debian_mirror([deb822]) == "http://mirror.example/debian"
    assert testbed.debian_mirror([tmp_path / "missing", one_line]) == "http://other.example/debian"
    assert testbed.debian_mirror([tmp_path / "missing"]) == testbed.DEFAULT_MIRROR
    monkeypatch.setenv("PHONEAGENT_DEBIAN_MIRROR", "http://local/debian")
    assert testbed.debian_mirror([deb822]) == "http://local/debian"


def test_credentials_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEAGENT_CACHE", str(tmp_path))
    monkeypatch.delenv("PHONEAGENT_ARI_USER", raising=False)
    monkeypatch.delenv("PHONEAGENT_ARI_PASSWORD", raising=False)
    user, password = testbed.ari_credentials()
    assert user == "phoneagent" and len(password) >= 24
    assert testbed.ari_credentials() == (user, password)
    assert stat.S_IMODE((tmp_path / "ari-credentials").stat().st_mode) == 0o600
    monkeypatch.setenv("PHONEAGENT_ARI_USER", "ops")
    monkeypatch.setenv("PHONEAGENT_ARI_PASSWORD", "s3cret;x")
    assert testbed.ari_credentials() == ("ops", "s3cret;x")
    assert "password = s3cret\\;x\n" in testbed.render_ari_user("ops", "s3cret;x")


@pytest.mark.parametrize(("reported", "used"), [("22.8.0", True), ("22.6.0", False),
                                                ("20.17.0", False), ("23.1.0", True)])
def test_host_asterisk_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 reported: str, used: bool) -> None:
    fake = tmp_path / "bin/asterisk"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho 'Asterisk {reported}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setenv("PHONEAGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PHONEAGENT_ARI_USER", "u")
    monkeypatch.setenv("PHONEAGENT_ARI_PASSWORD", "p")
    assert testbed.host_asterisk() == (str(fake) if used else None)
    bed = testbed.load_bed()
    assert (bed.root is None) == used
    if used:  # a private instance: config, run and log dirs under the cache
        conf = testbed._desired_configs(bed)["asterisk.conf"].decode()
        assert f"astrundir => {tmp_path}/cache/asterisk-host/run" in conf
        assert "astmoddir" not in conf
        assert bed.asterisk_argv()[1:] == ["-C", f"{tmp_path}/cache/asterisk-host/etc/asterisk.conf"]


def test_parse_version() -> None:
    assert testbed.parse_version("Asterisk 22.10.1+dfsg+~cs6-1") == (22, 10)
    assert testbed.parse_version("Asterisk 20.5.0") == (20, 5)
    assert testbed.parse_version("bash: asterisk: not found") is None


# --- the real bed -----------------------------------------------------------------------

class AudioSocketPeer:
    """A one-call AudioSocket server in a thread: keeps the UUID and the audio it receives,
    answers with 20 ms of silence (avoids a known AudioSocket wedge) and then `reply`,
    paced at real time."""

    def __init__(self, reply: bytes = b"") -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(20)
        self.addr = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.reply = reply
        self.uuid: str | None = None
        self.audio = bytearray()
        self.kinds: list[int] = []
        self.got_uuid = threading.Event()
        self.eof = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            buf = b""
            try:
                while data := conn.recv(65536):
                    buf += data
                    while len(buf) >= 3 and len(buf) >= 3 + int.from_bytes(buf[1:3], "big"):
                        kind, size = buf[0], int.from_bytes(buf[1:3], "big")
                        payload, buf = buf[3:3 + size], buf[3 + size:]
                        self.kinds.append(kind)
                        if kind == 0x01:
                            self.uuid = str(uuid.UUID(bytes=payload))
                            self.got_uuid.set()
                            self._play(conn, bytes(FRAME) + self.reply)
                        elif kind == 0x12:
                            self.audio += payload
            except OSError:
                pass
        self.eof.set()

    @staticmethod
    def _play(conn: socket.socket, pcm: bytes) -> None:
        next_send = time.monotonic()
        for i in range(0, len(pcm), FRAME):
            conn.sendall(b"\x12" + struct.pack(">H", len(pcm[i:i + FRAME])) + pcm[i:i + FRAME])
            next_send += 0.02
            time.sleep(max(0.0, next_send - time.monotonic()))

    def close(self) -> None:
        self._sock.close()
        self._thread.join(10)


def _sine(freq: float, seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


def _peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def _call(bed: AsteriskBed, exten: str, variables: dict[str, str],
          peer: AudioSocketPeer) -> tuple[str, str]:
    call_uuid = str(uuid.uuid4())
    channel_id = testbed_ari.ari_originate_local(
        bed, call_uuid, exten, {"PHONEAGENT_AUDIOSOCKET": peer.addr, **variables})
    assert peer.got_uuid.wait(10), "AudioSocket peer got no connection"
    assert peer.uuid == call_uuid
    return call_uuid, channel_id


def _assert_gone(bed: AsteriskBed, call_uuid: str, before: list[dict[str, object]]) -> None:
    assert testbed_ari.ari_wait_no_channels(bed, timeout=10, match=call_uuid) == []
    if not before:  # nothing else was running: nothing at all may be left
        assert testbed_ari.ari_wait_no_channels(bed, timeout=10) == []
        assert testbed_ari.ari_list_bridges(bed) == []


def test_credentials_not_committed(asterisk_bed: AsteriskBed) -> None:
    password = asterisk_bed.ari_password
    repo = testbed.REPO_CONFIG_DIR.parent
    files = set(testbed.REPO_CONFIG_DIR.rglob("*"))
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True, timeout=30, check=False)
    files |= {repo / name for name in listed.stdout.splitlines()}
    for path in files:
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert password.encode() not in path.read_bytes(), f"ARI password in {path}"
    wrong = AsteriskBed(root=asterisk_bed.root, ari_user=asterisk_bed.ari_user, ari_password="x")
    with pytest.raises(testbed.AriError) as err:
        testbed.ari_request(wrong, "GET", "/asterisk/info")
    assert err.value.status == 401


def test_health(asterisk_bed: AsteriskBed) -> None:
    report = asterisk_bed.health()
    assert report.ok, report.problems
    assert report.version.startswith("22.")
    assert report.ari_ok
    assert report.audiosocket_modules == {m: True for m in testbed.AUDIOSOCKET_MODULES}


def test_dialplan_and_endpoint(asterisk_bed: AsteriskBed) -> None:
    for context in ("phoneagent", "phoneagent-test", "phoneagent-agent"):
        assert f"Context '{context}' created" in asterisk_bed.rx(f"dialplan show {context}")
    agent = asterisk_bed.rx("dialplan show phoneagent")
    assert "'agent' =>" in agent and "'agent-direct' =>" in agent and "UUID()" in agent
    glob = asterisk_bed.rx("dialplan show globals")
    assert f"PHONEAGENT_AUDIOSOCKET={asterisk_bed.audiosocket_addr}" in glob
    assert f"PHONEAGENT_ARI_APP={asterisk_bed.ari_app}" in glob
    assert "Endpoint:  sipp " in asterisk_bed.rx("pjsip show endpoint sipp")
    transports = asterisk_bed.rx("pjsip show transports")
    assert f"{asterisk_bed.sip_host}:{asterisk_bed.sip_port}" in transports


def test_local_originate_silence_hangup_leaves_nothing(asterisk_bed: AsteriskBed) -> None:
    before = testbed_ari.ari_list_channels(asterisk_bed)
    peer = AudioSocketPeer()
    try:
        call_uuid, channel_id = _call(asterisk_bed, "silence", {"SILENCE_SECONDS": "30"}, peer)
        # originate variables land on the ;1 channel that runs the test extension
        assert (testbed_ari.ari_channel_variable(asterisk_bed, channel_id, "PHONEAGENT_AUDIOSOCKET")
                == peer.addr)
        names = {c["name"] for c in testbed_ari.ari_list_channels(asterisk_bed)}
        assert any(n.startswith(f"AudioSocket/{peer.addr}-{call_uuid}") for n in names)
        deadline = time.monotonic() + 5
        while len(peer.audio) < 5 * FRAME and time.monotonic() < deadline:
            time.sleep(0.02)
        assert testbed_ari.ari_hangup(asterisk_bed, channel_id)
        assert peer.eof.wait(10), "Asterisk kept the AudioSocket connection open"
        assert not testbed_ari.ari_hangup(asterisk_bed, channel_id)  # already gone
    finally:
        peer.close()
    assert set(peer.kinds) == {0x01, 0x12}  # silence is a steady stream of silent frames
    assert len(peer.audio) >= 5 * FRAME and not any(peer.audio)
    _assert_gone(asterisk_bed, call_uuid, before)


@pytest.mark.parametrize(("exten", "variables"), [("tone", {"TONE": "1000"}), ("tone-1000", {})])
def test_tone_reaches_agent(asterisk_bed: AsteriskBed, exten: str,
                            variables: dict[str, str]) -> None:
    before = testbed_ari.ari_list_channels(asterisk_bed)
    peer = AudioSocketPeer()
    try:
        call_uuid, channel_id = _call(asterisk_bed, exten, variables, peer)
        deadline = time.monotonic() + 10
        while len(peer.audio) < 16000 * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        testbed_ari.ari_hangup(asterisk_bed, channel_id)
        assert peer.eof.wait(10)
    finally:
        peer.close()
    assert len(peer.audio) >= 16000 * 2, "less than 1 s of slin16 audio arrived"
    assert abs(_peak_hz(bytes(peer.audio[-32000:]), 16000) - 1000) < 10
    _assert_gone(asterisk_bed, call_uuid, before)


def test_record_what_the_agent_says(asterisk_bed: AsteriskBed) -> None:
    before = testbed_ari.ari_list_channels(asterisk_bed)
    name = f"test-{uuid.uuid4()}"
    peer = AudioSocketPeer(reply=_sine(440, 1.5))
    try:
        call_uuid, _ = _call(asterisk_bed, "record", {"REC_NAME": name, "REC_SECONDS": "2"}, peer)
        assert peer.eof.wait(15), "record did not hang up after REC_SECONDS"
    finally:
        peer.close()
    path = asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/{name}.wav")
    try:
        with wave.open(str(path), "rb") as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    finally:
        path.unlink(missing_ok=True)
    assert rate == 8000 and 1.2 < len(pcm) / 2 / rate < 2.5
    assert abs(_peak_hz(pcm, rate) - 440) < 10
    _assert_gone(asterisk_bed, call_uuid, before)


def test_start_recovers_after_crash(asterisk_bed: AsteriskBed) -> None:
    """kill -9 leaves a stale pid file and control socket: start() must cope."""
    pid = int((asterisk_bed.run_dir() / "asterisk.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while asterisk_bed.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not asterisk_bed.is_running()
    assert (asterisk_bed.run_dir() / "asterisk.ctl").exists()  # stale
    t0 = time.monotonic()
    bed = testbed.start()
    assert time.monotonic() - t0 < 30
    assert bed == asterisk_bed
    assert bed.health().ok
    t0 = time.monotonic()
    assert testbed.start() == bed  # already running and healthy: reused
    assert time.monotonic() - t0 < 5


def test_a_bed_stopped_mid_session_is_up_again_for_the_next_test(asterisk_bed: AsteriskBed) -> None:
    """What every test's `asterisk_bed` does first: a clean `core stop` by anyone is undone."""
    testbed.stop()
    assert not asterisk_bed.is_running()
    bed = checked_bed()
    assert bed == asterisk_bed and bed.is_running() and bed.health().ok
