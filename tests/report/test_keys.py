import math

import pytest

from radae.report.keys import KeyNumbers, format_number, key_segment, lookup


def test_put_rounds_as_displayed_and_nests():
    k = KeyNumbers()
    span = k.put("a.b.auc", 0.81649, ".3f")
    assert str(span) == '<span class="num" data-key="a.b.auc">0.816</span>'
    k.put("a.n", 12.0, "int")
    k.put("a.p", 0.000123456, ".3g")
    d = k.as_dict()
    assert d == {"a": {"b": {"auc": 0.816}, "n": 12, "p": 0.000123}}
    assert isinstance(d["a"]["n"], int)
    assert lookup(d, "a.b.auc") == 0.816


@pytest.mark.parametrize("value", [None, float("nan"), math.inf, "x"])
def test_missing_values_are_null_and_na(value):
    k = KeyNumbers()
    assert ">n/a<" in str(k.put("x", value))
    assert k.as_dict() == {"x": None}


def test_same_key_two_values_is_an_error():
    k = KeyNumbers()
    k.put("x", 0.5)
    k.put("x", 0.5001)  # same displayed value: fine
    with pytest.raises(ValueError, match="two different values"):
        k.put("x", 0.6)


def test_key_segments_and_formats():
    assert key_segment("td_auc@365") == "td_auc_365"
    assert key_segment("a.b c") == "a_b_c"
    assert format_number(3.0, "int") == "3"
    assert format_number(1234.5, ".3g") == "1.23e+03"
    assert float(format_number(1234.5, ".3g")) == 1230.0


def test_markup_in_keys_is_escaped():
    k = KeyNumbers()
    assert "&lt;" in str(k.put("x", 1, "int", suffix="<b>"))
