"""Agent files: the shipped examples load, and every kind of mistake is reported with the file,
the field and the problem, before any call (and before any request to a tool)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from phoneagent.agents.load import AgentFileError, load_agent, load_agents
from phoneagent.cli import main
from phoneagent.settings import SettingsError, load_settings

AGENTS = Path(__file__).resolve().parents[2] / "agents"
MINIMAL = """\
name: demo
instructions: You help callers with their orders.
"""
TOOL = """\
allowed_hosts: [127.0.0.1]
tools:
  - name: order_status
    description: look up an order
    url: http://127.0.0.1:8900/orders/{order_id}
    parameters:
      type: object
      properties: {order_id: {type: string}}
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(AgentFileError) as exc:
        load_agent(path, env={})
    return str(exc.value)


def test_the_shipped_examples_load_with_their_tools() -> None:
    agents = load_agents(AGENTS, env={})
    assert {"shipments", "appointments", "support"} <= set(agents)
    ship = agents["shipments"]
    assert [t.name for t in ship.config.tools] == ["order_status", "lookup_customer"]
    assert ship.webhooks["order_status"].url == "http://127.0.0.1:8900/orders/{order_id}"
    assert ship.config.caller_lookup is not None and ship.config.caller_lookup.tool == "lookup_customer"
    assert ship.profile.transfer.available and not ship.profile.recording.enabled
    for agent in agents.values():
        assert agent.config.greeting and agent.config.system_prompt


def test_url_base_comes_from_the_environment() -> None:
    ship = load_agents(AGENTS, env={"SAMPLE_BACKEND_URL": "http://127.0.0.1:9999"})["shipments"]
    assert ship.webhooks["order_status"].url == "http://127.0.0.1:9999/orders/{order_id}"


def test_a_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, MINIMAL), env={})
    assert agent.name == "demo" and agent.config.tools == () and not agent.config.acts
    assert not agent.profile.recording.enabled  # recording is opt-in, with its notice
    assert not agent.profile.transfer.available


def test_recording_on_has_its_notice(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, MINIMAL + "recording: {enabled: true, notice: This call is recorded for training.}\n"), env={})
    assert agent.profile.recording.enabled and agent.profile.recording.notice == "This call is recorded for training."


def test_language_picks_the_multilingual_stt_and_needs_a_voice(tmp_path: Path) -> None:
    assert "needs engines.voice" in error_of(write(tmp_path, MINIMAL + "language: de\n"))
    agent = load_agent(write(tmp_path, MINIMAL + "language: de\nengines: {voice: piper-thorsten-medium}\n"), env={})
    assert agent.stt == "whisper-base" and agent.voice == "piper-thorsten-medium" and agent.config.language == "de"
    assert load_agent(write(tmp_path, MINIMAL), env={}).stt is None  # English: the service's STT


def test_settings_reach_the_dialog(tmp_path: Path) -> None:
    text = MINIMAL + TOOL + textwrap.dedent("""\
        prompts: {greeting: Hi from demo., tool_failed: Our system is down., read_back: "I have {value}. Correct?",
                  slot_spell: "Please spell the {what}."}
        capture: {hypotheses: 3, max_rounds: 2}
        caller_memory: {calls: 2, within_days: 7}
        turn_taking: {min_delay_s: 0.7, barge_in_min_s: 0.5, backchannel_max_s: 1.0, backchannels: [gotcha], no_input_s: 12,
                      end_of_turn_model: true, complete_above: 0.9, incomplete_below: 0.1, first_clause_words_waiting: 5,
                      unfinished_words: false, words_ahead_s: 0}
        keypad: {terminator: "*", max_digits: 6}
        transfer: {mode: blind, context: queues, extension: sales}
        escalation: {max_failures: 3, frustration: [Rubbish]}
        outbound: {greeting: Hello from demo., amd: false, voicemail_message: Please call us back.}
        """)
    cfg = load_agent(write(tmp_path, text), env={})
    c = cfg.config
    assert c.greeting == "Hi from demo." and c.tool_failed == "Our system is down."
    assert c.slot_spell == "Please spell the {what}."
    assert c.read_back == "I have {value}. Correct?" and (c.slot_hypotheses, c.slot_max_rounds) == (3, 2)
    assert c.caller_memory is not None and (c.caller_memory.calls, c.caller_memory.within_days) == (2, 7)
    assert c.endpointer.min_delay_s == 0.7 and c.endpointer.barge_in_min_s == 0.5 and c.no_input_s == 12
    assert c.endpointer.backchannel_max_s == 1.0 and c.backchannels == ("gotcha",)
    assert c.end_of_turn_model and (c.endpointer.complete_above, c.endpointer.incomplete_below) == (0.9, 0.1)
    assert c.first_clause_words_waiting == 5 and load_agent(write(tmp_path, MINIMAL), env={}).config.first_clause_words_waiting == 3
    assert not c.unfinished_words and load_agent(write(tmp_path, MINIMAL), env={}).config.unfinished_words
    assert c.words_ahead_s == 0 and load_agent(write(tmp_path, MINIMAL), env={}).config.words_ahead_s == 0.8
    assert c.dtmf.terminator == "*" and c.dtmf.max_digits == 6
    assert c.escalation.max_failures == 3 and c.escalation.frustration == ("rubbish",)
    assert c.outbound_greeting == "Hello from demo." and c.amd is False and c.voicemail_message == "Please call us back."
    assert cfg.profile.transfer.mode == "blind" and cfg.profile.transfer.blind_extension == "sales"


@pytest.mark.parametrize(("text", "expected"), [
    ("name: demo\ninstructions: a: b\n", "line 2, column 16 not valid YAML: mapping values are not allowed here"),
    (MINIMAL + "name: again\n", "line 3, column 1 not valid YAML: key 'name' is given twice"),
    ("- just a list\n", "a mapping of fields"),
    ("name: demo\n", "instructions: Field required"),
    (MINIMAL + "greting: Hi\n", "greting: Extra inputs are not permitted"),
    ("name: Demo Agent\ninstructions: You help callers with orders.\n", "name: String should match pattern"),
    (MINIMAL + "language: english\n", "language: String should match pattern"),
    (MINIMAL + "turn_taking: {min_delay_s: 9}\n", "turn_taking.min_delay_s: Input should be less than or equal to 3"),
    (MINIMAL + "turn_taking: {first_clause_words_waiting: 1}\n", "turn_taking.first_clause_words_waiting: Input should be greater than or equal to 2"),
    (MINIMAL + "turn_taking: {words_ahead_s: -1}\n", "turn_taking.words_ahead_s: Input should be greater than or equal to 0"),
    (MINIMAL + "turn_taking: {min_delay_s: 1.5}\n", "turn_taking: need 0 <= complete_delay_s (0.2) <= min_delay_s (1.5) <= max_delay_s (1.2)"),
    (MINIMAL + "turn_taking: {complete_above: 0.3, incomplete_below: 0.6}\n", "need 0 <= incomplete_below (0.6) <= complete_above (0.3)"),
    (MINIMAL + "transfer: {mode: blind}\n", "blind transfer needs both 'context' and 'extension'"),
    (MINIMAL + "transfer: {mode: sideways}\n", "transfer.mode: Input should be 'warm' or 'blind'"),
    (MINIMAL + TOOL.replace("name: order_status", "name: end_call"), "tools[0].name: Value error, 'end_call' is a built-in"),
    (MINIMAL + TOOL.replace("name: order_status", "name: Order Status"), "tools[0].name: String should match pattern"),
    (MINIMAL + TOOL.replace("type: object\n", "type: array\n"), "tools[0].parameters: Value error, must be a JSON schema with type: object"),
    (MINIMAL + TOOL.replace("{order_id: {type: string}}", "{order_id: {type: nope}}"), "parameters is not a valid JSON schema"),
    (MINIMAL + TOOL.replace("/orders/{order_id}", "/orders/{order}"), "url field {order} is not one of its parameters"),
    (MINIMAL + TOOL.replace("timeout", "x").replace("    url:", "    timeout_s: 0\n    url:"), "timeout_s: Input should be greater than 0"),
    (MINIMAL + TOOL + "caller_lookup: {tool: nope}\n", "caller_lookup.tool 'nope' is not one of tools"),
    (MINIMAL + TOOL + "caller_lookup: {tool: order_status}\n", "caller_lookup.argument 'phone' is not a parameter"),
    (MINIMAL + TOOL.replace("allowed_hosts: [127.0.0.1]", "allowed_hosts: [http://127.0.0.1/]"), "write host or host:port"),
    (MINIMAL + TOOL.replace("http://127.0.0.1:8900", "${CRM_URL}"), "tools.order_status.url: '${CRM_URL}/orders/{order_id}' needs CRM_URL"),
    (MINIMAL + TOOL + "\n".join(TOOL.splitlines()[2:]) + "\n", "tool names must be unique"),
    (MINIMAL + TOOL.replace("answer", "x") + "    answer: {cases: {a: b}}\n", "'when' (a result field) and 'cases'"),
    (MINIMAL + TOOL.replace("{order_id: {type: string}}", "{order_id: {type: string, x-slot: time}}"),
     "x-slot must be one of digits, phone, email, date, amount, got 'time'"),
    (MINIMAL + TOOL.replace("{order_id: {type: string}}", "{order_id: {type: string, x-slot: amount, x-currency: XYZ}}"),
     "x-currency is for an amount slot, one of USD"),
    (MINIMAL + "prompts: {read_back: 'Is that right'}\n", "prompts.read_back: Value error, must contain {value}"),
    (MINIMAL + "capture: {hypotheses: 50}\n", "capture.hypotheses: Input should be less than or equal to 10"),
    (MINIMAL + "prompts: {slot_again: 'Say the {number} again'}\n", "may use only {value}, {what} and {or_keypad}: KeyError('number')"),
    (MINIMAL + "prompts: {slot_spell: 'Spell the {mail}'}\n", "may use only {value}, {what} and {or_keypad}: KeyError('mail')"),
])
def test_each_mistake_names_the_file_field_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    assert expected in message


def test_a_webhook_outside_the_allowed_hosts_is_refused_at_load(tmp_path: Path) -> None:
    text = MINIMAL + TOOL.replace("http://127.0.0.1:8900", "https://crm.example.com")
    message = error_of(write(tmp_path, text))
    assert "tools.order_status" in message and "host 'crm.example.com'" in message and "allowed_hosts" in message


def test_directory_problems_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, MINIMAL, "b.yaml")
    write(tmp_path, "name: other\n", "c.yml")
    with pytest.raises(AgentFileError) as exc:
        load_agents(tmp_path, env={})
    message = str(exc.value)
    assert "b.yaml: agent name 'demo' is also used by" in message and "c.yml" in message and "instructions: Field required" in message
    with pytest.raises(AgentFileError, match="not a directory of agent files"):
        load_agents(tmp_path / "b.yaml", env={})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AgentFileError, match="no agent files"):
        load_agents(empty, env={})


def test_two_agents_on_one_port_are_refused(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL + "audiosocket_port: 9300\n", "a.yaml")
    write(tmp_path, MINIMAL.replace("demo", "demo2") + "audiosocket_port: 9300\n", "b.yaml")
    with pytest.raises(AgentFileError, match="same audiosocket_port"):
        load_agents(tmp_path, env={})


def test_serve_refuses_bad_agent_files_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "name: demo\n")
    assert main(["serve", "--agents", str(tmp_path), "--skip-preflight"]) == 2
    err = capsys.readouterr().err
    assert "agent.yaml" in err and "instructions: Field required" in err


def test_serve_refuses_an_unknown_default_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, MINIMAL)
    assert main(["serve", "--agents", str(tmp_path), "--default-agent", "nope", "--skip-preflight"]) == 2
    assert "default agent 'nope' is not one of demo" in capsys.readouterr().err


def test_service_config_file(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    path = write(tmp_path, """\
        host: 0.0.0.0
        port: 9100
        advertise: 10.0.0.5:9100
        agents: agents
        default_agent: shipments
        engines: {llm: qwen2.5-coder-0.5b-instruct, llm_pool: 3, threads: 2}
        """, "phoneagent.yaml")
    cfg = load_settings(path)
    assert cfg.agents == tmp_path / "agents" and cfg.advertise == "10.0.0.5:9100"
    from models.engines import EngineConfig

    engines = cfg.engines.apply(EngineConfig())
    assert engines.llm == "qwen2.5-coder-0.5b-instruct" and engines.llm_pool == 3 and engines.threads == 2
    assert engines.stt == EngineConfig().stt


@pytest.mark.parametrize(("text", "expected"), [
    ("advertise: 0.0.0.0:9092\n", "advertise: Value error, write host:port of this box"),
    ("engines: {device: tpu}\n", "engines.device: Input should be 'auto', 'cpu' or 'cuda'"),
    ("port: 70000\n", "port: Input should be less than or equal to 65535"),
    ("instance: agent one\n", "instance: String should match pattern"),
    ("listen: 1\n", "listen: Extra inputs are not permitted"),
])
def test_service_config_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text, "phoneagent.yaml")
    with pytest.raises(SettingsError) as exc:
        load_settings(path)
    assert str(path) in str(exc.value) and expected in str(exc.value)


def test_listening_on_all_addresses_with_ari_needs_advertise(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEAGENT_ARI_USER", "u")
    monkeypatch.setenv("PHONEAGENT_ARI_PASSWORD", "p")
    assert main(["serve", "--ari", "--host", "0.0.0.0", "--skip-preflight"]) == 2
    assert "set advertise" in capsys.readouterr().err
