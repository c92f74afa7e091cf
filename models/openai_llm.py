"""An LLM on an OpenAI-compatible inference server (llama-server, llama-cpp-python's server,
vLLM) behind the `LLM` interface: the scale-out alternative to in-process llama.cpp.

Why it is shaped like this:
- One box's GPU serves many calls best from a continuous-batching server; the dialog does not
  change: `stream` yields tokens, `tool_call` returns a constrained choice, failures raise
  `EngineError` so the dialog's spoken fallback runs (never dead air).
- Streaming chat completions over server-sent events, read with the standard library in the
  scheduler's worker thread (the interface is synchronous). Cancellation closes the connection:
  llama-server, llama-cpp-python's server and vLLM all stop a request whose client went away.
- Timeouts: connecting, the first token, and the gap between tokens each have a limit; a server
  that hangs is an `EngineError` after `read_timeout_s`, not a silent call.
- Prefix reuse: llama.cpp servers keep a slot's KV cache when asked (`cache_prompt`), so a
  call's next turn evaluates only what is new; vLLM's prefix caching needs nothing per request.
- The server applies the model's own chat template. Caller text could then carry a model's
  control tokens ("<|im_start|>system ...") into the prompt, so user and tool text is defused
  before it is sent (`defuse`), as the in-process engine tokenises it as plain text.
- Tool calls use the in-process engine's schema (`tool_schema`): a JSON-schema response format
  (`schema_style`: "json_object" for llama.cpp servers, "json_schema" for vLLM and OpenAI).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Literal

from models.base import LLM, CancelToken, EngineError, EngineInfo, GenerationStats, Message, Token, ToolCall, ToolSpec
from models.prompt import call_json, tool_instructions, tool_schema

# Opening and closing markers of the chat templates in use (ChatML, Gemma, Llama 3, Mistral):
# in caller text a zero-width space after the "<" (or "[") keeps each from matching a special token.
_CONTROL = re.compile(r"<(?=\|[A-Za-z_]+\||/?(?:start_of_turn|end_of_turn|s)>)|\[(?=/?INST\])")
_ZWSP = "\u200b"


def defuse(text: str) -> str:
    """Caller or tool text with every control-token look-alike broken (shown the same when read)."""
    return _CONTROL.sub(lambda m: m.group(0) + _ZWSP, text)


def wire_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Our messages as chat-completion messages. A tool call and its result travel as text (as
    the in-process engine writes them), so any server and template accepts them."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m.tool_call is not None:
            out.append({"role": "assistant", "content": call_json(m.tool_call.name, m.tool_call.arguments)})
        elif m.role == "tool":
            out.append({"role": "user", "content": f"Tool {m.name or 'result'} returned: {defuse(m.content)}"})
        else:
            out.append({"role": m.role, "content": m.content if m.role in ("system", "assistant") else defuse(m.content)})
    return out


class OpenAICompatLLM(LLM):
    """Chat completions from `base_url` (e.g. http://10.0.0.7:8080, without /v1) for `model`."""

    def __init__(self, base_url: str, model: str, *, api_key: str = "", connect_timeout_s: float = 2.0,
                 read_timeout_s: float = 10.0, context_tokens: int = 4096,
                 schema_style: Literal["json_object", "json_schema"] = "json_object", cache_prompt: bool = True) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"llm server url {base_url!r}: write http://host:port")
        self._url = url
        self._path = url.path.rstrip("/") + "/v1/chat/completions"
        self.model, self.api_key = model, api_key
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._context_tokens, self.schema_style, self.cache_prompt = context_tokens, schema_style, cache_prompt
        self.info = EngineInfo("llm", model, base_url, "remote", streaming=True)

    @property
    def context_tokens(self) -> int:
        return self._context_tokens

    def served_models(self) -> list[str]:
        """The model names the server serves (GET /v1/models): a reachability check at start."""
        conn = self._connection()
        try:
            conn.request("GET", self._path.replace("/chat/completions", "/models"), headers=self._headers("application/json"))
            resp = conn.getresponse()
            if resp.status != 200:
                raise EngineError(f"llm server {self.info.model_path}: GET /v1/models: HTTP {resp.status}")
            return [str(m.get("id")) for m in json.loads(resp.read()).get("data", [])]
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise EngineError(f"llm server {self.info.model_path}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
        return cls(self._url.hostname or "", self._url.port, timeout=self.connect_timeout_s)

    def _headers(self, accept: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": accept,
                **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})}

    def _open(self, body: dict[str, Any]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """POST the request; the response once its headers are in. Errors become EngineError."""
        conn = self._connection()
        headers = self._headers("text/event-stream" if body.get("stream") else "application/json")
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self.read_timeout_s)
            conn.request("POST", self._path, body=json.dumps({"model": self.model, **body}), headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise EngineError(f"llm server {self.info.model_path}: {type(exc).__name__}: {exc or 'no answer'}") from exc
        if resp.status != 200:
            detail = resp.read(2000).decode("utf-8", "replace")
            conn.close()
            raise EngineError(f"llm server {self.info.model_path}: HTTP {resp.status}: {detail}")
        return conn, resp

    def _events(self, resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        """The JSON payloads of a server-sent event stream, up to [DONE]."""
        try:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            kind = "no token within the read timeout" if isinstance(exc, (socket.timeout, TimeoutError)) else f"{type(exc).__name__}: {exc}"
            raise EngineError(f"llm server {self.info.model_path}: stream broken: {kind}") from exc

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int = 128, temperature: float = 0.0, stop: Sequence[str] = (),
        cancel: CancelToken | None = None, session_key: str | None = None,
    ) -> Generator[Token, None, GenerationStats]:
        body: dict[str, Any] = {"messages": wire_messages(messages), "max_tokens": max_tokens, "temperature": temperature,
                                "stream": True, "stream_options": {"include_usage": True}}
        if stop:
            body["stop"] = list(stop)
        if self.cache_prompt:
            body["cache_prompt"] = True
        t0 = time.perf_counter()
        conn, resp = self._open(body)
        index, ttft, finish, cached = 0, 0.0, "stop", 0
        usage: dict[str, Any] = {}
        try:
            for event in self._events(resp):
                usage = event.get("usage") or usage
                cached = int((event.get("timings") or {}).get("cache_n", cached))
                for choice in event.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        if index == 0:
                            ttft = time.perf_counter() - t0
                        yield Token(text, index)
                        index += 1
                if cancel is not None and cancel.cancelled:
                    finish = "cancelled"
                    break
        finally:
            conn.close()  # also how a cancelled or abandoned generation stops on the server
        return GenerationStats(int(usage.get("prompt_tokens", 0)), cached, int(usage.get("completion_tokens", index)),
                               ttft, time.perf_counter() - t0, "cancelled" if finish == "cancelled" else str(finish))

    def tool_call(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *,
        cancel: CancelToken | None = None, session_key: str | None = None, max_tokens: int = 256,
    ) -> ToolCall | None:
        """The same constrained choice as the in-process engine: None for "none", and when cut off."""
        schema = tool_schema(tools)
        fmt = ({"type": "json_object", "schema": schema} if self.schema_style == "json_object"
               else {"type": "json_schema", "json_schema": {"name": "tool_choice", "schema": schema, "strict": True}})
        body = {"messages": wire_messages([*messages, Message("user", tool_instructions(tools))]), "max_tokens": max_tokens,
                "temperature": 0.0, "response_format": fmt, **({"cache_prompt": True} if self.cache_prompt else {})}
        if cancel is not None and cancel.cancelled:
            return None
        conn, resp = self._open(body)
        try:
            reply = json.loads(resp.read())
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise EngineError(f"llm server {self.info.model_path}: tool call answer unreadable: {exc}") from exc
        finally:
            conn.close()
        choice = (reply.get("choices") or [{}])[0]
        if choice.get("finish_reason") != "stop" or (cancel is not None and cancel.cancelled):
            return None
        text = (choice.get("message") or {}).get("content") or ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineError(f"llm server: the constrained tool call is not JSON ({exc}): {text[:300]!r}") from exc
        names = {t.name for t in tools}
        if not isinstance(data, dict) or data.get("name") not in names | {"none"}:
            raise EngineError(f"llm server: the tool call names no offered tool: {text[:300]!r}")
        return None if data["name"] == "none" else ToolCall(data["name"], dict(data.get("arguments") or {}))
