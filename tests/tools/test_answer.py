"""phoneagent.tools.answer: spoken answers filled from a tool's result."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from phoneagent.tools.answer import Answer, AnswerError, fill, spoken_date, spoken_digits, spoken_time

STATUS = Answer(when="status", cases={"delayed": "Order {order_id:digits} is late: {reason}.", "shipped": "It left on {sent:date}."},
                otherwise="Order {order_id:digits} is {status}.")


def test_plain_template() -> None:
    assert Answer(text="Your order is {status}.").render({"status": "packed"}, {}) == "Your order is packed."


def test_when_chooses_the_case_by_the_field() -> None:
    assert STATUS.render({"status": "delayed", "reason": "a storm"}, {"order_id": "4572"}) == "Order 4 5 7 2 is late: a storm."
    assert STATUS.render({"status": "shipped", "sent": "2026-12-09"}, {"order_id": "1"}) == "It left on Wednesday, December 9."


def test_otherwise_for_an_unknown_value() -> None:
    assert STATUS.render({"status": "lost"}, {"order_id": "12"}) == "Order 1 2 is lost."


def test_otherwise_when_the_field_is_missing() -> None:
    a = Answer(when="status", cases={"x": "X"}, otherwise="I can't see its status.")
    assert a.render({}, {}) == "I can't see its status."


@pytest.mark.parametrize("value, expected", [(True, "Open now."), (False, "Closed now."), (3, "Three left."), (0, "None left.")])
def test_when_on_non_string_values_uses_str(value: Any, expected: str) -> None:
    a = Answer(when="v", cases={"true": "Open now.", "false": "Closed now.", "3": "Three left.", "0": "None left."})
    assert a.render({"v": value}, {}) == expected


def test_no_case_and_no_otherwise_is_an_error() -> None:
    a = Answer(when="status", cases={"delayed": "Late."})
    with pytest.raises(AnswerError, match="status='lost'"):
        a.render({"status": "lost"}, {})
    with pytest.raises(AnswerError, match="status"):
        a.render({}, {})


def test_missing_field_names_the_field() -> None:
    with pytest.raises(AnswerError, match=r"\{eta\}"):
        Answer(text="It arrives {eta:date}.").render({"status": "late"}, {})


def test_none_value_is_an_error() -> None:
    with pytest.raises(AnswerError, match=r"\{eta\}"):
        Answer(text="It arrives {eta}.").render({"eta": None}, {})


def test_falsy_values_are_still_spoken() -> None:
    assert fill("{n} items, {flag}, [{empty}]", {"n": 0, "flag": False, "empty": ""}) == "0 items, False, []"


def test_dotted_field_for_nested_results() -> None:
    result = {"customer": {"name": "Ada", "address": {"city": "Bonn"}}}
    assert Answer(text="Hello {customer.name} from {customer.address.city}.").render(result, {}) == "Hello Ada from Bonn."
    with pytest.raises(AnswerError, match=r"customer\.phone"):
        Answer(text="{customer.phone}").render(result, {})
    with pytest.raises(AnswerError, match=r"customer\.name\.first"):
        Answer(text="{customer.name.first}").render(result, {})


def test_when_on_a_dotted_field() -> None:
    a = Answer(when="order.state", cases={"open": "Still open."}, otherwise="Other.")
    assert a.render({"order": {"state": "open"}}, {}) == "Still open."


def test_a_non_mapping_result_is_the_field_result() -> None:
    assert Answer(text="There are {result} seats.").render(4, {}) == "There are 4 seats."


@pytest.mark.parametrize("value, expected", [
    ("2026-12-09", "Wednesday, December 9"),
    ("2024-02-29", "Thursday, February 29"),
    ("2026-01-01T08:00:00Z", "Thursday, January 1"),
    (dt.date(2025, 7, 4), "Friday, July 4"),
])
def test_date_spec(value: Any, expected: str) -> None:
    assert fill("{d:date}", {"d": value}) == expected
    assert spoken_date(value) == expected


@pytest.mark.parametrize("value", ["2026-13-01", "2023-02-29", "tomorrow", "09/12/2026", ""])
def test_bad_date_is_an_error(value: str) -> None:
    with pytest.raises(AnswerError, match="not an ISO date"):
        fill("{d:date}", {"d": value})


@pytest.mark.parametrize("value, expected", [
    ("4572", "4 5 7 2"),
    (4572, "4 5 7 2"),
    ("4711#", "4 7 1 1 hash"),
    ("*0+", "star 0 plus"),
    ("AB-12 3", "A B 1 2 3"),
])
def test_digits_spec(value: Any, expected: str) -> None:
    assert fill("{n:digits}", {"n": value}) == expected


def test_spoken_digits_directly() -> None:
    assert spoken_digits("0049 (30) 1234") == "0 0 4 9 3 0 1 2 3 4"


@pytest.mark.parametrize("value, expected", [
    ("14:30", "2:30 PM"),
    ("09:00", "9 AM"),
    ("00:00", "12 AM"),
    ("12:00", "12 PM"),
    ("12:05", "12:05 PM"),
    ("23:59:59", "11:59 PM"),
    ("07:08", "7:08 AM"),
])
def test_time_spec(value: str, expected: str) -> None:
    assert fill("{t:time}", {"t": value}) == expected
    assert spoken_time(value) == expected


@pytest.mark.parametrize("value", ["25:00", "noon", "14h30", ""])
def test_bad_time_is_an_error(value: str) -> None:
    with pytest.raises(AnswerError, match="not a time of day"):
        fill("{t:time}", {"t": value})


@pytest.mark.parametrize("template, values, expected", [
    ("{amount:.2f}", {"amount": 12.5}, "12.50"),
    ("{amount:,.2f}", {"amount": 1234.5}, "1,234.50"),
    ("{n:03d}", {"n": 7}, "007"),
    ("{name:>5}", {"name": "ab"}, "ab"),  # padding is whitespace, collapsed away
])
def test_python_format_specs(template: str, values: dict[str, Any], expected: str) -> None:
    assert fill(template, values) == expected


def test_python_format_spec_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(AnswerError, match="cannot format"):
        fill("{amount:.2f}", {"amount": "twelve"})


def test_arguments_are_fields_and_the_result_wins_a_clash() -> None:
    a = Answer(text="Order {order_id} for {name}: {status}.")
    assert a.render({"status": "packed"}, {"order_id": "7", "name": "Ada"}) == "Order 7 for Ada: packed."
    assert a.render({"status": "packed", "order_id": "7-B"}, {"order_id": "7", "name": "Ada"}) == "Order 7-B for Ada: packed."


def test_whitespace_is_collapsed() -> None:
    a = Answer(text="  Order\n  {id}   is\t{status}.  ")
    assert a.render({"id": "1", "status": "late"}, {}) == "Order 1 is late."


def test_fields() -> None:
    assert STATUS.fields() == {"order_id", "reason", "sent", "status"}
    assert Answer(text="Hi {customer.name}, {{literal}} {eta:date}").fields() == {"customer.name", "eta"}
    assert Answer(text="No fields.").fields() == set()
