"""Answering-machine detection for outbound calls, in one place: `rules.py` the pure decision
rules (timing, beep, phrases), `listener.py` feeds them from the callee's audio (VAD, tone
analysis, partial STT), `screen.py` runs it in the first seconds of an answered call."""
