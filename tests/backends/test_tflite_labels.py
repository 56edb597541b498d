"""An INT8 .tflite is called full-integer only when its graph computes nothing in float."""

from __future__ import annotations

from edgekd.backends.tflite.lower import int8_activations


def test_integer_only_graph_is_full_integer() -> None:
    g = {"input_type": "INT8", "output_type": "INT8", "float_operators": {}}
    assert int8_activations(g) == "int8 (full-integer: int8 input, int8 output)"


def test_float_operators_left_are_named() -> None:
    g = {"input_type": "INT8", "output_type": "INT8", "float_operators": {"ADD": 3, "LOGISTIC": 1}}
    label = int8_activations(g)
    assert (
        "full-integer" not in label
        and label == "int8 with float operators left (ADD x3, LOGISTIC x1; int8 input, int8 output)"
    )
