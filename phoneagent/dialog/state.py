"""What every part of one call's dialog may read and change: how it is going (outcome, ending,
transfer), the unhappy-path counters, and when the caller or agent last did something."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CallState:
    last_activity: float
    outcome: str = "completed"
    summary: str | None = None  # what a person taking the call was told
    disposition: str | None = None  # why it ended as it did ("the caller asked for a person")
    transfer_target: str | None = None
    amd_result: str | None = None  # outbound: what answering-machine detection decided
    ending: bool = False  # the agent ends the call (goodbye said, fallback, machine)
    transferring: bool = False  # the caller is on hold while a person is asked
    clarifications: int = 0  # not understood, in a row
    reprompts: int = 0
    failures: int = 0  # tool failures in the call (escalation counts them)
    last_question: str = ""  # the caller's previous turn, to notice the same question twice
    cut_off: str = ""  # the unheard rest of the last interrupted reply
