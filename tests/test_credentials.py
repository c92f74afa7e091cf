"""Secrets come from the environment or a file it names, and weak ones are refused where they
guard something off this host."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoneagent import credentials
from phoneagent.cli import main


def test_a_secret_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHONEAGENT_X", raising=False)
    assert credentials.read("PHONEAGENT_X") == ""
    path = tmp_path / "x"
    path.write_text("from-a-file\n")
    monkeypatch.setenv("PHONEAGENT_X_FILE", str(path))
    assert credentials.read("PHONEAGENT_X") == "from-a-file"
    monkeypatch.setenv("PHONEAGENT_X", "from-the-env")
    assert credentials.read("PHONEAGENT_X") == "from-the-env"  # the variable itself wins
    monkeypatch.delenv("PHONEAGENT_X")
    monkeypatch.setenv("PHONEAGENT_X_FILE", str(tmp_path / "missing"))
    with pytest.raises(credentials.SecretError, match="PHONEAGENT_X_FILE"):
        credentials.read("PHONEAGENT_X")


@pytest.mark.parametrize(("value", "where", "ok"), [
    ("asterisk", "http://127.0.0.1:8088", True),  # loopback: the box's own business
    ("asterisk", "http://[::1]:8088", True),
    ("asterisk", "http://10.0.0.5:8088", False),
    ("CHANGEME", "http://pbx.example.org:8088", False),
    ("short-but-not-known", "http://10.0.0.5:8088", True),
    ("tooshort", "10.0.0.5", False),
    ("0123456789abcdef", "0.0.0.0", True),
])
def test_weak_secrets_are_refused_off_loopback(value: str, where: str, ok: bool) -> None:
    if ok:
        assert credentials.check("S", value, where=where) == value
    else:
        with pytest.raises(credentials.SecretError, match="too weak"):
            credentials.check("S", value, where=where)


def test_serve_refuses_a_default_ari_password_for_a_remote_asterisk(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEAGENT_ARI_USER", "phoneagent")
    monkeypatch.setenv("PHONEAGENT_ARI_PASSWORD", "asterisk")
    assert main(["serve", "--ari", "--ari-url", "http://10.0.0.5:8088", "--skip-preflight"]) == 2
    assert "too weak" in capsys.readouterr().err
    monkeypatch.setenv("PHONEAGENT_CONSOLE_TOKEN", "secret")
    assert main(["serve", "--agent", "echo", "--http-port", "0", "--db", f"sqlite:///{tmp_path}/calls.db"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
