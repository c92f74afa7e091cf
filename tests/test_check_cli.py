"""`phoneagent check` (what ansible validates a new config with) and the bundle's own check."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import bundle
from phoneagent.cli import main

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def test_check_accepts_a_good_config_and_names_its_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text(f"port: 9300\nagents: {AGENTS}\ndefault_agent: support\n")
    assert main(["check", "--config", str(cfg)]) == 0
    assert "AudioSocket on 127.0.0.1:9300, agents: appointments, shipments, support" in capsys.readouterr().out


def test_check_refuses_a_bad_config_naming_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text(f"port: 9300\nagents: {AGENTS}\nmax_cals: 3\n")
    assert main(["check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "max_cals" in err


def test_check_refuses_a_default_agent_that_has_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text(f"agents: {AGENTS}\ndefault_agent: sales\n")
    assert main(["check", "--config", str(cfg)]) == 2
    assert "'sales' is not one of appointments, shipments, support" in capsys.readouterr().err


def test_a_bundle_file_altered_after_the_build_fails_the_check_by_name(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.onnx"
    model.write_bytes(b"weights")
    (tmp_path / "SHA256SUMS").write_text(f"{bundle.sha256(model)}  models/m.onnx\n")
    bundle.verify(tmp_path)
    model.write_bytes(b"weightz")
    with pytest.raises(bundle.BundleError, match="models/m.onnx does not match"):
        bundle.verify(tmp_path)
    model.unlink()
    with pytest.raises(bundle.BundleError, match="models/m.onnx is missing"):
        bundle.verify(tmp_path)
