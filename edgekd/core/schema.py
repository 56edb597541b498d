"""The base of every config schema and the messages its validation errors become.

Every problem is reported with its YAML path and a fix, e.g.
``passes[1].quantize.precision: 'int4' is not one of int8, fp16, fp32``.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Base of every config block: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def did_you_mean(word: str, choices: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loc(loc: tuple[str | int, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "function-before"):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Names of the fields valid at ``loc`` (for 'did you mean')."""
    cur: Any = model
    dict_key = False
    for part in loc:
        if dict_key:  # the key of a dict of models (e.g. parity.per_artifact.int8): its value is ``cur``
            dict_key = False
            continue
        if isinstance(part, int) or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            continue
        field = cur.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        dict_key = get_origin(ann) is dict
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                cur = cand
                break
            for inner in getattr(cand, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    cur = inner
                    break
        else:
            cur = None
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return [n for n, f in cur.model_fields.items() if not f.exclude]
    return []


def _describe(err: dict[str, Any], schema: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = _fields_at(schema, loc[:-1])
        hint = did_you_mean(key, valid) if valid else ""
        return f"unknown key {key!r}{hint}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = expected.replace("'", "").replace(" or ", ", ")
        return f"{value!r} is not one of {options}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{value!r} is out of range: {err['msg'].lower()}"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return f"{err['msg'].lower()} (got {value!r})" if value is not None else err["msg"].lower()


def _model_union(ann: Any) -> bool:
    """True when a field's annotation is a union of two or more config models (pydantic puts the chosen branch's
    tag into an error's path there)."""

    def bare(a: Any) -> Any:  # Annotated[Model, Tag(...)] -> Model
        return get_args(a)[0] if get_origin(a) is Annotated else a

    args = [bare(a) for a in get_args(bare(ann)) if a is not type(None)]
    return sum(isinstance(a, type) and issubclass(a, BaseModel) for a in args) >= 2


def _without_union_tags(schema: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """``loc`` without the branch names pydantic adds after a field holding a union of models (e.g.
    ``search.space.resnet.blocks``: the YAML has no ``resnet`` key)."""
    out: list[str | int] = []
    cur: Any = schema
    skip_next = False
    for part in loc:
        if skip_next:
            skip_next = False
            continue
        out.append(part)
        if isinstance(part, int) or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            continue
        field = cur.model_fields.get(part)
        if field is None:
            cur = None
            continue
        if _model_union(field.annotation):
            skip_next, cur = True, None
            continue
        cur = next(
            (
                a
                for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return tuple(out)


def validation_problems(exc: ValidationError, schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Turn a pydantic error into 'yaml.path: message' lines."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        shown = _without_union_tags(schema, loc)
        problems.append(f"{_loc(shown, prefix)}: {_describe(err, schema, loc)}")
    return problems
