"""The AudioSocket codec under coverage-guided fuzzing (a short run; the long one is
`python -m bench.fuzz_audiosocket`, results in bench/results/)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris ships wheels for x86-64 only")

from bench.fuzz_audiosocket import fuzz  # noqa: E402


def test_twenty_thousand_fuzzed_inputs_break_no_invariant(tmp_path: Path) -> None:
    r = fuzz(20_000, seed=7, workdir=tmp_path)
    assert r["exit_code"] == 0 and r["runs_done"] == 20_000 and not r["artifacts"], r["log_tail"]
    assert r["edges_covered"] and r["edges_covered"] > 50  # it reached past the header parsing
