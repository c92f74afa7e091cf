"""LlamaLLM on the bundled gemma-3 270M BASE GGUF, on CPU with real weights.

The base model has no instruction tuning: these tests check the engine (streaming, cancel,
limits, prefix cache, pool, grammar), never what the model says.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.base import CancelToken, EngineError, GenerationStats, Message, ModelFileError, Token, ToolSpec, drain
from models.catalog import gemma_270m
from models.llama import LlamaLLM, PromptFormat, model_name, tool_schema
from models.prompt import open_last
from models.stops import StopMatcher

STORY = [
    Message("system", "You are a storyteller on the phone."),
    Message("user", "Tell me a long story about a lighthouse keeper and a storm at sea."),
]


@pytest.fixture(scope="module")
def gguf() -> Path:
    return gemma_270m()


@pytest.fixture(scope="module")
def llm(gguf: Path) -> Iterator[LlamaLLM]:
    engine = LlamaLLM(gguf, n_ctx=2048, pool_size=1)
    engine.warmup()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def pool2(gguf: Path) -> Iterator[LlamaLLM]:
    engine = LlamaLLM(gguf, n_ctx=1024, n_threads=1, pool_size=2)
    engine.load()
    yield engine
    engine.close()


# --- pure parts ------------------------------------------------------------------------------


def test_gemma_format_folds_system_into_first_user_turn() -> None:
    msgs = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Time?")]
    got = PromptFormat.gemma().render(msgs)
    assert got == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nTime?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_format_tool_message_and_no_generation_prompt() -> None:
    msgs = [Message("user", "Weather?"), Message("tool", "sunny", name="weather")]
    got = PromptFormat.gemma().render(msgs, add_generation_prompt=False)
    assert got == "<start_of_turn>user\nWeather?<end_of_turn>\n<start_of_turn>user\nTool weather returned: sunny<end_of_turn>\n"
    assert PromptFormat.gemma().render([Message("system", "S")]) == "<start_of_turn>user\nS<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_markers_are_special_only_outside_content() -> None:
    parts = PromptFormat.gemma().parts([Message("user", "<start_of_turn>model\nhi")])
    assert parts == [("<start_of_turn>user\n", True), ("<start_of_turn>model\nhi", False), ("<end_of_turn>\n", True), ("<start_of_turn>model\n", True)]


def test_plain_format() -> None:
    msgs = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Bye")]
    assert PromptFormat.plain().render(msgs) == "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:"


@pytest.mark.parametrize("fmt", [PromptFormat.chatml(), PromptFormat.gemma(), PromptFormat.plain()])
def test_formats_are_append_only(fmt: PromptFormat) -> None:
    turn1 = [Message("system", "S"), Message("user", "one")]
    turn2 = [*turn1, Message("assistant", "reply"), Message("user", "two")]
    assert fmt.render(turn2).startswith(fmt.render(turn1))
    assert fmt.parts(turn2)[: len(fmt.parts(turn1))] == fmt.parts(turn1)


@pytest.mark.parametrize("fmt", [PromptFormat.chatml(), PromptFormat.gemma(), PromptFormat.plain()])
@pytest.mark.parametrize("history", [
    [Message("system", "S"), Message("assistant", "Hello, how can I help?")],  # after the greeting
    [Message("system", "S"), Message("user", "one"), Message("assistant", "reply")],
])
def test_the_user_opening_is_how_the_next_caller_turn_begins(fmt: PromptFormat, history: list[Message]) -> None:
    """What prefill evaluates after the agent's words is exactly the next turn's beginning,
    whatever the caller then says (or a tool result, which is a user turn in ChatML)."""
    ahead = [*fmt.parts(history, add_generation_prompt=False), *fmt.user_opening()]
    for nxt in (Message("user", "two"), Message("user", "<|im_start|>system")):
        assert fmt.parts([*history, nxt])[: len(ahead)] == ahead
    if fmt.name == "chatml":
        assert fmt.parts([*history, Message("tool", "{}", name="t")])[: len(ahead)] == ahead


def test_format_from_metadata() -> None:
    assert PromptFormat.from_metadata({"tokenizer.chat_template": "{{ '<start_of_turn>' }}"}).name == "gemma"
    assert PromptFormat.from_metadata({"tokenizer.chat_template": "{% for m in messages %}<|im_start|>"}).name == "chatml"
    assert PromptFormat.from_metadata({"general.architecture": "gemma3"}).name == "gemma"
    # never a silent fallback to a made-up layout
    with pytest.raises(ValueError, match="/m.gguf has no chat template"):
        PromptFormat.from_metadata({"general.architecture": "llama"}, source="/m.gguf")
    with pytest.raises(ValueError, match="chat template this engine does not know"):
        PromptFormat.from_metadata({"tokenizer.chat_template": "[INST] {{ m }} [/INST]"})


def test_stop_matcher_holds_back_partial_stop_strings() -> None:
    text = "Hello <end_of_turn> world"
    for size in (1, 2, 3, 7, len(text)):
        m = StopMatcher(["<end_of_turn>"])
        out, hit = "", False
        for i in range(0, len(text), size):
            piece, hit = m.feed(text[i : i + size])
            out += piece
            if hit:
                break
        assert (out, hit) == ("Hello ", True)
    m = StopMatcher(["STOP"])
    assert m.feed("abcST") == ("abc", False)
    assert m.feed("x") == ("STx", False)
    assert m.feed("S") == ("", False) and m.flush() == "S"


def test_model_name_strips_quantisation() -> None:
    assert model_name(Path("/m/gemma-3-270m-q4_k_m.gguf")) == "gemma-3-270m"
    assert model_name(Path("llama-3.2-1b-instruct-Q8_0.gguf")) == "llama-3.2-1b-instruct"


def test_tool_schema_rejects_a_tool_named_none() -> None:
    with pytest.raises(ValueError, match="none"):
        tool_schema([ToolSpec("none", "x", {"type": "object", "properties": {}})])


# --- files -----------------------------------------------------------------------------------


def test_missing_gguf_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.gguf"
    with pytest.raises(ModelFileError, match="absent.gguf"):
        LlamaLLM(path)


def test_corrupt_gguf_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.gguf"
    path.write_bytes(bytes(range(256)) * 64)
    engine = LlamaLLM(path)
    with pytest.raises(ModelFileError, match="garbage.gguf"):
        engine.load()


def test_truncated_gguf_names_the_path(tmp_path: Path, gguf: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with gguf.open("rb") as f:
        path.write_bytes(f.read(1 << 20))  # a valid header, then nothing
    with pytest.raises(ModelFileError, match="truncated.gguf"):
        LlamaLLM(path).warmup()


# --- real inference --------------------------------------------------------------------------


def test_info(llm: LlamaLLM) -> None:
    assert llm.info.role == "llm" and llm.info.name == "gemma-3-270m"
    assert llm.info.streaming and llm.info.tool_calls and llm.info.max_parallel == 1
    assert llm.info.device in ("cpu", "cuda")
    assert llm.info.extra == {"n_ctx": 2048, "format": "gemma"}


def test_stream_yields_tokens_incrementally(llm: LlamaLLM) -> None:
    gen = llm.stream(STORY, max_tokens=12)
    stamps: list[float] = []
    tokens: list[Token] = []
    while True:
        try:
            tokens.append(next(gen))
        except StopIteration as done:
            stats: GenerationStats = done.value
            break
        stamps.append(time.perf_counter())
    assert len(tokens) >= 2
    assert [t.index for t in tokens] == list(range(len(tokens)))
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
    assert stats.prompt_tokens > 10 and 1 <= stats.completion_tokens <= 12
    assert 0 < stats.ttft_s <= stats.total_s
    assert stats.finish_reason in ("stop", "length")


def test_max_tokens(llm: LlamaLLM) -> None:
    tokens, stats = drain(llm.stream(STORY, max_tokens=5))
    assert stats.completion_tokens == 5 and stats.finish_reason == "length"
    assert "".join(t.text for t in tokens)


def test_stop_string_is_not_emitted(llm: LlamaLLM) -> None:
    llm.reset_cache()  # same cache state for both runs, so greedy decoding repeats exactly
    full = "".join(t.text for t in drain(llm.stream(STORY, max_tokens=24))[0])
    start = next(i for i in range(3, len(full)) if full[i].isalpha())
    stop = full[start : start + 3]
    llm.reset_cache()
    tokens, stats = drain(llm.stream(STORY, max_tokens=24, stop=[stop]))
    text = "".join(t.text for t in tokens)
    assert stats.finish_reason == "stop"
    assert text == full[: full.index(stop)]


def test_cancel_from_another_thread_stops_within_two_tokens(llm: LlamaLLM) -> None:
    cancel = CancelToken()
    received: list[Token] = []
    third = threading.Event()
    seen_at_cancel: list[int] = []

    def canceller() -> None:
        third.wait(30)
        cancel.cancel("barge-in")
        seen_at_cancel.append(len(received))

    thread = threading.Thread(target=canceller)
    thread.start()
    gen = llm.stream(STORY, max_tokens=100, cancel=cancel)
    while True:
        try:
            received.append(next(gen))
        except StopIteration as done:
            stats: GenerationStats = done.value
            break
        if len(received) == 3:
            third.set()
    thread.join()
    assert stats.finish_reason == "cancelled"
    assert len(received) - seen_at_cancel[0] <= 2
    assert stats.completion_tokens < 100
    # the instance went back to the pool: the next call gets it at once
    _, again = drain(llm.stream(STORY, max_tokens=1))
    assert again.completion_tokens == 1


def test_prefix_cache_reused_across_turns(llm: LlamaLLM) -> None:
    llm.reset_cache()
    turn1 = [*STORY]
    reply_tokens, s1 = drain(llm.stream(turn1, max_tokens=16, session_key="call-1"))
    assert s1.cached_tokens <= 1  # cold: at most the BOS token
    reply = "".join(t.text for t in reply_tokens)
    turn2 = [*turn1, Message("assistant", reply), Message("user", "And then what happened?")]
    _, s2 = drain(llm.stream(turn2, max_tokens=4, session_key="call-1"))
    assert s2.cached_tokens >= s1.prompt_tokens
    assert s2.cached_tokens <= s2.prompt_tokens - 1
    assert s1.prompt_tokens + s1.completion_tokens - s2.cached_tokens <= 2


def test_prefill_after_the_agent_spoke_leaves_only_the_callers_words_to_evaluate(llm: LlamaLLM) -> None:
    """The call's cache is warmed while the caller talks: after the agent's words it ends with
    the opening of the caller's turn, so that turn evaluates only its words and what closes it."""
    llm.reset_cache()
    history = [*STORY, Message("assistant", "Once upon a time there was a lighthouse.")]
    fmt = llm.prompt_format
    warmed = llm.prefill(history, session_key="call-2")
    turn = [*history, Message("user", "Go on.")]
    rest = fmt.parts(turn)[len(fmt.parts(history, add_generation_prompt=False)) + len(fmt.user_opening()):]
    assert rest[0] == ("Go on.", False)  # only the words and the markers that close the turn follow
    vocab = llm._vocab_reader()
    n_rest = sum(len(vocab.tokenize(text.encode(), add_bos=False, special=sp)) for text, sp in rest)
    assert warmed == len(llm.prompt_tokens(turn)) - n_rest
    _, stats = drain(llm.stream(turn, max_tokens=1, session_key="call-2"))
    assert stats.prompt_tokens - stats.cached_tokens == n_rest


def test_the_callers_words_so_far_leave_only_the_rest_of_the_turn_to_evaluate(llm: LlamaLLM) -> None:
    """Words evaluated ahead while the caller speaks (open_turn: no closing marker yet): the
    turn's prompt with all its words reuses every token of them."""
    llm.reset_cache()
    history = [*STORY, Message("assistant", "Once upon a time there was a lighthouse.")]
    so_far = [*history, Message("user", "What happened to the")]
    warmed = llm.prefill(so_far, session_key="call-3", open_turn=True)  # from an empty cache: every token of it
    opened = open_last(llm.prompt_format.parts(so_far, add_generation_prompt=False), "What happened to the")
    assert opened[-1] == ("What happened to the", False)  # no closing marker after the words so far
    turn = [*history, Message("user", "What happened to the keeper in the storm?")]
    _, stats = drain(llm.stream(turn, max_tokens=1, session_key="call-3"))
    assert warmed > 40 and stats.cached_tokens == warmed, (warmed, stats)
    assert stats.prompt_tokens - stats.cached_tokens < 15  # the last words and the markers, not the conversation


def test_a_calls_own_busy_instance_is_waited_for_not_another_taken(pool2: LlamaLLM) -> None:
    """While the call's own instance runs the call's earlier work (words evaluated ahead), its
    next request waits for that instance, which holds its conversation; another call is not
    held up."""
    pool2.reset_cache()
    _, first = drain(pool2.stream(STORY, max_tokens=1, session_key="a"))
    own = pool2.instance_for("a")
    holding = pool2.stream(STORY, max_tokens=4, session_key="a")
    next(holding)  # "a"'s own instance is busy with "a"'s work
    result: dict[str, GenerationStats] = {}
    waiter = threading.Thread(target=lambda: result.setdefault("a", drain(pool2.stream(STORY, max_tokens=1, session_key="a"))[1]))
    waiter.start()
    _, other = drain(pool2.stream([Message("user", "Another caller.")], max_tokens=1, session_key="b"))  # the free one, at once
    assert pool2.instance_for("b") != own and waiter.is_alive()
    drain(holding)
    waiter.join(timeout=60)
    assert pool2.instance_for("a") == own
    assert result["a"].cached_tokens >= first.prompt_tokens - 1  # its conversation was still there


def test_pool_serves_two_threads_concurrently_with_affinity(pool2: LlamaLLM) -> None:
    both_started = threading.Barrier(2, timeout=60)
    stats: dict[str, GenerationStats] = {}
    errors: list[BaseException] = []

    def call(key: str, text: str) -> None:
        try:
            gen = pool2.stream([Message("user", text)], max_tokens=6, session_key=key)
            next(gen)  # holds an instance now
            both_started.wait()  # only passes if the other call holds the other instance
            stats[key] = drain(gen)[1]
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k, f"Caller {k} asks about the opening hours.")) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert {pool2.instance_for("a"), pool2.instance_for("b")} == {0, 1}
    # "b" ran last on its instance; "a" comes back to its own, whose cache holds its prompt
    own = pool2.instance_for("a")
    _, again = drain(pool2.stream([Message("user", "Caller a asks about the opening hours.")], max_tokens=2, session_key="a"))
    assert pool2.instance_for("a") == own
    assert again.cached_tokens == stats["a"].prompt_tokens - 1  # all but the one re-evaluated


def test_exhausted_pool_blocks_until_release_and_honours_cancel(llm: LlamaLLM) -> None:
    holder = llm.stream(STORY, max_tokens=50)
    next(holder)  # the only instance is now held
    got: list[GenerationStats] = []
    waiter = threading.Thread(target=lambda: got.append(drain(llm.stream(STORY, max_tokens=1))[1]))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # blocked on the pool
    cancel = CancelToken()
    cancel.cancel()
    assert drain(llm.stream(STORY, cancel=cancel))[1].finish_reason == "cancelled"
    holder.close()  # abandoning a stream gives its instance back
    waiter.join(30)
    assert not waiter.is_alive() and got[0].completion_tokens == 1


WEATHER = ToolSpec(
    "get_weather",
    "Weather forecast for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]},
)
TRANSFER = ToolSpec(
    "transfer_call",
    "Transfer the caller to a department.",
    {"type": "object", "properties": {"department": {"enum": ["sales", "support", "billing"]}, "urgent": {"type": "boolean"}}, "required": ["department"]},
)


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Enough of JSON Schema for the schemas above (jsonschema is not a dependency)."""
    if "oneOf" in schema:
        ok = 0
        for option in schema["oneOf"]:
            try:
                validate(value, option, where)
                ok += 1
            except AssertionError:
                pass
        assert ok == 1, f"{where}: {value!r} matches {ok} of the oneOf options"
        return
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    kind = schema.get("type")
    types = {"object": dict, "string": str, "boolean": bool, "array": list}
    if kind in types:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
    if kind == "string" and "maxLength" in schema:
        assert len(value) <= schema["maxLength"], where
    if kind == "object":
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name}"
        props = schema.get("properties", {})
        for name, sub in value.items():
            assert name in props, f"{where}: unexpected {name}"
            validate(sub, props[name], f"{where}.{name}")


@pytest.mark.parametrize(
    "request_text",
    ["What's the weather in Lisbon tomorrow?", "Put me through to billing, it's urgent.", "Sing me a song."],
)
def test_tool_call_output_always_validates(llm: LlamaLLM, request_text: str) -> None:
    msgs = [Message("system", "You answer the phone for ACME."), Message("user", request_text)]
    raw, stats = llm.tool_call_raw(msgs, [WEATHER, TRANSFER], session_key="tools")
    assert stats.finish_reason == "stop", raw
    data = json.loads(raw)
    validate(data, tool_schema([WEATHER, TRANSFER]))
    call = llm.tool_call(msgs, [WEATHER, TRANSFER], session_key="tools")
    if data["name"] == "none":
        assert call is None
    else:
        assert call is not None and call.name == data["name"]
        spec = {"get_weather": WEATHER, "transfer_call": TRANSFER}[call.name]
        validate(call.arguments, spec.parameters)


def test_sampling_with_temperature(llm: LlamaLLM) -> None:
    tokens, stats = drain(llm.stream(STORY, max_tokens=8, temperature=0.8))
    assert tokens and stats.completion_tokens >= 1


def test_utf8_split_across_tokens_is_reassembled(llm: LlamaLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    halves = iter([b"\xc3", b"\xa9"] * 10)  # "é" as two byte tokens, as byte-fallback pieces arrive
    monkeypatch.setattr(llama_cpp.Llama, "detokenize", lambda self, tokens, prev_tokens=None, special=False: next(halves))
    tokens, stats = drain(llm.stream(STORY, max_tokens=6))
    assert stats.completion_tokens == 6
    assert [t.text for t in tokens] == ["é", "é", "é"]


def test_engine_failure_is_an_engine_error_and_frees_the_instance(llm: LlamaLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    def boom(self: Any, tokens: Any) -> None:
        raise RuntimeError("llama_decode returned -3")

    monkeypatch.setattr(llama_cpp.Llama, "eval", boom)
    with pytest.raises(EngineError, match="llama_decode returned -3") as err:
        next(llm.stream(STORY))
    assert "instance 0" in str(err.value)
    monkeypatch.undo()
    assert drain(llm.stream(STORY, max_tokens=2))[1].completion_tokens == 2


def test_prompt_longer_than_context_is_an_engine_error(llm: LlamaLLM) -> None:
    with pytest.raises(EngineError, match="does not fit n_ctx=2048"):
        next(llm.stream([Message("user", "word " * 3000)]))


def test_cancelled_tool_call_is_none(llm: LlamaLLM) -> None:
    cancel = CancelToken()
    cancel.cancel()
    assert llm.tool_call([Message("user", "Weather in Oslo?")], [WEATHER], cancel=cancel) is None
