"""Property tests: no document, however odd, makes the config loaders fail with anything but an edgekd error."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekd.compiler.plan import load_model_config, parse_model_config
from edgekd.config.target import parse_target
from edgekd.core.errors import EdgekdError

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
keys = st.sampled_from(
    [
        "name",
        "teacher",
        "student",
        "data",
        "passes",
        "calibration",
        "constraints",
        "arch",
        "params",
        "checkpoint",
        "source",
        "path",
        "epochs",
        "distill",
        "quantize",
        "lower",
        "precision",
        "input_shape",
        "seed",
    ]
) | st.text(max_size=8)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_only_raise_edgekd_errors(doc: object) -> None:
    for parse in (parse_model_config, parse_target):
        with contextlib.suppress(EdgekdError):
            parse(doc)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=200))
def test_random_yaml_text_only_raises_edgekd_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(EdgekdError):
        load_model_config(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["distill", "quantize", "lower", "profile", "report", "prune"]),
        st.dictionaries(keys, scalars, max_size=4),
        min_size=1,
        max_size=1,
    )
)
def test_random_pass_settings(item: dict) -> None:
    doc = {"teacher": {"arch": "resnet"}, "passes": [item]}
    with contextlib.suppress(EdgekdError):
        parse_model_config(doc)
    assert yaml.safe_dump(doc)  # the document itself is plain data
