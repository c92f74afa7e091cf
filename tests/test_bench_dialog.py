"""bench.dialog's --versus: one setting changed, named the way a reader of AgentConfig names it."""

from __future__ import annotations

import pytest

from bench.dialog import setting_name, with_setting, with_settings
from phoneagent.dialog.config import AgentConfig


def test_one_endpointer_or_agent_setting_changes_and_nothing_else() -> None:
    cfg = AgentConfig()
    faster = with_setting(cfg, "endpointer.speculative_s=0.12")
    assert faster.endpointer.speculative_s == 0.12 and faster.endpointer.min_delay_s == cfg.endpointer.min_delay_s
    assert faster.first_clause_words_waiting == cfg.first_clause_words_waiting
    words = with_setting(cfg, "first_clause_words_waiting=6")
    assert words.first_clause_words_waiting == 6 and isinstance(words.first_clause_words_waiting, int)
    assert words.endpointer == cfg.endpointer
    assert with_setting(cfg, "pause_on_onset=false").pause_on_onset is False  # not bool("false")
    assert with_setting(cfg, "speculate=off").speculate is False and with_setting(cfg, "amd=On").amd is True
    assert with_setting(cfg, "filler=Hold on.").filler == "Hold on."


def test_several_settings_change_together() -> None:
    cfg = with_settings(AgentConfig(), "endpointer.min_delay_s=0.3; unfinished_words=false")
    assert cfg.endpointer.min_delay_s == 0.3 and cfg.unfinished_words is False
    assert cfg.endpointer.max_delay_s == AgentConfig().endpointer.max_delay_s
    with pytest.raises(SystemExit, match="has no field 'nope'"):
        with_settings(AgentConfig(), "unfinished_words=false;nope=1")
    assert setting_name(" endpointer.min_delay_s=0.4") == "min_delay_s-0.4"  # the results file's name


@pytest.mark.parametrize(("spec", "message"), [
    ("speculative_s", "wants FIELD=VALUE"),
    ("tts.speed=1", "wants FIELD=VALUE"),
    ("endpointer.nope=1", "EndpointerConfig has no field 'nope'"),
    ("first_clause_words_waiting=9", "2-6"),
    ("first_clause_words_waiting=2.5", "wants a whole number, not '2.5'"),
    ("words_ahead_s=-0.5", "words_ahead_s must be 0 \\(off\\) or more seconds, got -0.5"),
    ("pause_on_onset=maybe", "wants true or false, not 'maybe'"),
    ("endpointer.speculative_s=soon", "wants a number, not 'soon'"),
])
def test_a_bad_setting_is_refused_with_its_reason(spec: str, message: str) -> None:
    with pytest.raises((SystemExit, ValueError), match=message):
        with_setting(AgentConfig(), spec)
