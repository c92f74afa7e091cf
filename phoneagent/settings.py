"""The service config file (YAML): where it listens, where Asterisk reaches it, the database,
the agent files, and the engines (models, device, pools, threads). Command-line options win
over the file; the file wins over the built-in defaults. Validated at start like agent files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.engines import EngineConfig
from phoneagent.admission import BUSY_MESSAGE
from phoneagent.yamlfile import ConfigFileError, read_model


class SettingsError(ValueError):
    """A service config file that cannot be used; the message names the file and fields."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(_Strict):
    vad: str | None = None
    stt: str | None = None
    llm: str | None = None
    tts: str | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None
    stt_workers: int | None = Field(None, ge=1, le=16)
    llm_pool: int | None = Field(None, ge=1, le=16)
    llm_ctx: int | None = Field(None, ge=512, le=131072)
    tts_workers: int | None = Field(None, ge=1, le=16)
    threads: int | None = Field(None, ge=1, le=256)
    llm_url: str | None = Field(None, pattern=r"^https?://[^/\s]+(/\S*)?$",
                                description="an OpenAI-compatible inference server (llama-server, vLLM); llm is then its model name")
    llm_schema_style: Literal["json_object", "json_schema"] | None = None

    def apply(self, base: EngineConfig) -> EngineConfig:
        from dataclasses import replace

        return replace(base, **{k: v for k, v in self.model_dump().items() if v is not None})


class AriSettings(_Strict):
    url: str = "http://127.0.0.1:8088"
    app: str = Field("phoneagent", pattern=r"^[A-Za-z0-9_-]+$",
                     description="the Stasis app; agent hosts sharing an Asterisk each need their own (phoneagent-<host>: "
                     "the dialplan's agent-pool offers each call to all of them)")
    servers: list[str] = Field(default_factory=list, description="more Asterisk servers (ARI base URLs) this host takes calls "
                               "from, beside url: same app name and credentials, one controller each")

    @field_validator("servers")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
                raise ValueError(f"{url!r} is not an ARI base URL like http://10.0.0.5:8088")
        return v


class ServiceConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    advertise: str = Field("", description="host:port Asterisk connects to (externalMedia) when host is 0.0.0.0")
    db: str = "sqlite:///phoneagent.db"
    db_spool: Path = Field(Path("phoneagent-spool.jsonl"), description="call-log writes wait here while the database is unreachable")
    instance: str = Field("", max_length=128, pattern=r"^[A-Za-z0-9_.:-]*$",
                          description="this service's name in the call records (default: the machine's hostname); agent hosts "
                          "sharing one database need different names: each closes only its own calls after a crash")
    host_timeout_s: float = Field(60.0, ge=20.0, le=3600.0, description="an agent host sharing the database and silent this "
                                  "long is dead: this host finishes the calls it left open (keep it well past the 15 s lease)")
    http_host: str = Field("127.0.0.1", description="where /metrics and /healthz listen (keep it on loopback or a private network)")
    http_port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and /healthz on this port (none: not served)")
    console_token: str = Field("", description="opens the review console at /console on http_port (PHONEAGENT_CONSOLE_TOKEN wins); "
                               "empty: no console")
    agents: Path | None = None
    default_agent: str = ""
    max_calls: int | None = Field(None, ge=1, description="calls served at once; past it a caller hears busy_message "
                                  "and goes on to overflow (ARI) or is hung up. Unset: no limit (see README for a box's capacity)")
    busy_message: str = Field(BUSY_MESSAGE, min_length=1, max_length=400)
    overflow: tuple[str, str] | None = Field(None, description="[context, extension] in the dialplan where turned-away callers go (a queue)")
    engines: EngineSettings = EngineSettings()
    ari: AriSettings = AriSettings()

    @field_validator("advertise")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if v and (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or host in ("0.0.0.0", "::")):
            raise ValueError("write host:port of this box as Asterisk reaches it (not 0.0.0.0)")
        return v


def load_settings(path: Path) -> ServiceConfig:
    try:
        cfg = read_model(path, ServiceConfig, "the service config", empty_ok=True)
    except ConfigFileError as exc:
        raise SettingsError(str(exc)) from None
    if cfg.agents is not None and not cfg.agents.is_absolute():  # relative to the config file, not the cwd
        cfg = cfg.model_copy(update={"agents": (path.parent / cfg.agents)})
    return cfg
