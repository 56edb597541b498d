"""search: pick the student architecture without training any candidate (a zero-cost proxy: params by default,
DisWOT or another), by aging evolution under the target's budget (params, MACs, latency measured on this host).

The default proxy for image teachers is ``params`` (the largest student the budget allows): in the proxy study
(``benchmarks/proxy_study.py``, 48 distilled candidates on two spaces) it is the single proxy chosen by validation
tau on the MobileNet-like space, and on the untouched ResNet-like space it ranks best of every proxy (tau 0.52),
where DisWOT as its authors compute it is at chance (-0.16). ``proxy: diswot`` stays one line away.

```yaml
- search:
    space: {blocks: [[1, 2, 3], [1, 2, 3], [1, 2, 3]], widths: [[8, 16], [16, 32], [32, 64]], kernel: [3]}
    # or: {type: mobilenet, depths: [[1, 2], [1, 2, 3]], widths: [[8, 16], [24, 32]], expand: [[1, 3, 6], [3, 6]],
    #      kernel: [[3, 5], [3, 5]]}
    proxy: params                # the default; or diswot, snip, grad_norm, macs, synflow, naswot, zen
    budget: {latency_ms: 0.15, params: 200000}
    confirm: 2                   # the choice is measured 2 more times; the median must stay within latency_ms
# a Hugging Face text teacher: its own layers, FFN width and heads, weights inherited; latency at data.max_length
- search:
    space: {type: text-shrink, layers: [1, 2, 3], intermediate_size: [768, 1536], heads: [6, 12]}
    proxy: teacher_kl            # the default for text: how close the inherited candidate is to the teacher
    budget: {latency_ms: [3.0, 5.0]}
```
Writes ``search.json`` (every evaluated candidate, the Pareto set, the choice) into the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ConfigError, PipelineError
from edgekd.core.schema import Strict, did_you_mean
from edgekd.document.model import Section
from edgekd.latency.search_latency import candidate_latency
from edgekd.models.build import build
from edgekd.models.count import count_macs, count_params
from edgekd.models.shrink_image import anatomy
from edgekd.models.text import is_text
from edgekd.pipeline.context import Context
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.search.confirm import confirm_choice
from edgekd.stages.search.evolution import Evaluated, aging_evolution, pareto
from edgekd.stages.search.proxies import PROXIES, TEXT_PROXIES, ProbeBatch, build_seeded, score
from edgekd.stages.search.report import search_section
from edgekd.stages.search.space import ResNetSpace, SearchSpace, ShrinkSpace, Space, TextShrinkSpace

#: the most candidates measured again before a latency budget is declared unmeetable
CONFIRM_TRIES = 8


class Budget(Strict):
    """Limits a candidate must meet. ``latency_ms`` or ``macs`` may be a list: several budgets in one search
    (AutoDistil), one student per budget; the compile trains the first one's."""

    params: int | None = Field(default=None, gt=0)
    macs: float | list[float] | None = Field(default=None, description="MACs; a list: one student per budget")
    latency_ms: float | list[float] | None = Field(
        default=None, description="batch-1 latency on the target; a list: one student per budget"
    )

    @model_validator(mode="after")
    def _lists(self) -> Budget:
        lists = [k for k in ("macs", "latency_ms") if isinstance(getattr(self, k), list)]
        if len(lists) > 1:
            raise ValueError("give several budgets for one of macs or latency_ms, not both")
        for k in ("macs", "latency_ms"):
            v = getattr(self, k)
            values = v if isinstance(v, list) else [] if v is None else [v]
            if isinstance(v, list) and not v:
                raise ValueError(f"{k}: give at least one budget")
            if any(x <= 0 for x in values):
                raise ValueError(f"{k}: every budget must be > 0")
        return self

    def each(self) -> list[Budget]:
        """One budget with single limits per listed value (just this one when nothing is a list)."""
        for k in ("macs", "latency_ms"):
            v = getattr(self, k)
            if isinstance(v, list):
                return [self.model_copy(update={k: x}) for x in v]
        return [self]

    def swept(self) -> str | None:
        """The key whose value lists several budgets, or None."""
        return next((k for k in ("macs", "latency_ms") if isinstance(getattr(self, k), list)), None)


class SearchConfig(Strict):
    space: SearchSpace = Field(default_factory=ResNetSpace)
    proxy: str = Field(default="params", description="the zero-cost proxy (text teachers: teacher_kl)")
    population: int = Field(default=12, ge=2)
    sample: int = Field(default=4, ge=1, description="tournament size")
    iterations: int = Field(default=36, ge=0)
    crossover: float = Field(default=0.2, ge=0, le=1)
    batches: int = Field(default=3, ge=1, description="scores are averaged over this many real batches")
    batch_size: int = Field(default=64, ge=2)
    budget: Budget = Field(default_factory=Budget)
    confirm: int = Field(
        default=2,
        ge=0,
        description="under a measured latency budget, measure the choice this many more times: it is kept when the "
        "median of its readings stays within the budget, else the next best is tried (0: trust one reading)",
    )
    seed: int | None = None

    @field_validator("proxy")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PROXIES:
            raise ValueError(f"unknown proxy {v!r}{did_you_mean(v, list(PROXIES))}; proxies: {', '.join(PROXIES)}")
        return v


def aggregate(values: list[float]) -> tuple[float, float]:
    """Mean and population std of a candidate's per-batch scores. A NaN or -inf on any batch (a degenerate
    network) makes the candidate the worst, -inf (std 0); +inf, a proxy's overflow, is no evidence either."""
    if any(not math.isfinite(v) for v in values):
        return float("-inf"), 0.0
    return statistics.mean(values), statistics.pstdev(values)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no -Infinity: null means "scored worst"


def _row(e: Evaluated, space: Space) -> dict[str, Any]:
    return {
        "label": space.describe(e.cand),
        **{k: v for k, v in e.params.items() if k not in ("in_channels", "num_classes")},
        "score": _finite(e.score),
        "score_std": e.score_std,
        "params": e.n_params,
        "macs": e.macs,
        "latency_ms": e.latency_ms,
        "step": e.step,
        "origin": e.origin,
    }


@register_pass
class Search(Pass):
    name = "search"
    Config = SearchConfig
    requires = frozenset({"teacher", "data"})
    produces = frozenset({"student"})
    must_precede: ClassVar[dict[str, str]] = {"distilled": "search picks the student before it is trained"}
    changes_student = True
    result_key = ("search",)
    report_position = "overview"

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        c: SearchConfig = self.config  # type: ignore[assignment]
        text_space = isinstance(c.space, TextShrinkSpace)
        if is_text(teacher) and not text_space:
            raise ConfigError(
                f"{where}.space: a text teacher's students are searched in space type text-shrink (its layers, FFN "
                f"width and heads), not {c.space.type}",
                fix="space: {type: text-shrink, layers: [1, 2, 3], intermediate_size: [...], heads: [...]}",
            )
        if text_space and not is_text(teacher):
            raise ConfigError(
                f"{where}.space: type text-shrink shrinks a Hugging Face text teacher; this teacher is not one",
                fix="use space type resnet or mobilenet for image teachers",
            )
        if is_text(teacher):
            if "proxy" not in c.model_fields_set:
                c.proxy = "teacher_kl"
            if c.proxy not in TEXT_PROXIES:
                raise ConfigError(
                    f"{where}.proxy: {c.proxy} scores image models; for token inputs use one of "
                    f"{', '.join(TEXT_PROXIES)}",
                    fix="proxy: teacher_kl (the default for text)",
                )

    def result_entry(self, ctx: Context) -> Any:
        """The whole search.json (every candidate), else the metrics."""
        if "search_json" in ctx.artifacts:
            with contextlib.suppress(OSError, ValueError):
                return json.loads(ctx.path_of("search_json").read_text())
        return ctx.metrics.get("search")

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        return [search_section(result["search"])] if result.get("search") else []

    def run(self, ctx: Context) -> None:
        c: SearchConfig = self.config  # type: ignore[assignment]
        seed = ctx.config.seed if c.seed is None else c.seed
        shape, k = ctx.data.input_shape, ctx.data.num_classes
        # --- latency source (issue #7): measured on this host, or predicted by the target's latency predictor ---
        lat = candidate_latency(ctx.target, ctx.config.shipped_precision())
        measure = lat.fn is not None
        if c.budget.latency_ms is not None and not measure:
            raise PipelineError(
                f"search.budget.latency_ms needs latency on {ctx.target.name}, which cannot be measured here "
                "and has no latency predictor",
                fix=f"build one (edgekd profile --build-predictor --target {ctx.target.name} --device user@host), "
                "or budget params/macs instead",
            )
        if not measure:
            ctx.note(
                f"search: candidate latency not measured ({ctx.target.name} is not this host and has no latency "
                "predictor); the Pareto set uses MACs as the cost"
            )
        elif lat.source == "predicted":
            ctx.note(f"search: candidate latencies are predicted, not measured: {lat.describe}")
        # --- end of the latency-source hook ---
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(ctx.data.train), generator=g)
        batches = [
            ProbeBatch(ctx.data.train.x[idx], ctx.data.train.y[idx], k)
            for idx in order[: c.batches * c.batch_size].split(c.batch_size)
        ]
        teacher_anatomy = None
        if isinstance(c.space, ShrinkSpace):  # its genes are the teacher's stages and removable blocks
            body = anatomy(ctx.teacher, batches[0].x[:1])
            c.space.bind([len(r) for r in body.removable], list(shape))
            teacher_anatomy = body.describe()
        rejected = {"params": 0, "macs": 0, "latency_ms": 0}
        # what a candidate is (its params and size, whatever the budget), its latency once measured and its score
        # once it met a budget; the module itself is rebuilt (seeded, so identical) when it is timed or scored
        sized: dict[tuple[int, ...], tuple[dict[str, Any], int, int]] = {}
        latencies: dict[tuple[int, ...], float] = {}
        scored: dict[tuple[int, ...], Evaluated] = {}
        turned_down: set[tuple[int, tuple[int, ...]]] = set()  # (budget, candidate): each rejection counted once

        def module(params: dict[str, Any]) -> torch.nn.Module:
            spec = ModelSpec(arch=c.space.arch, params=params)
            return build_seeded(lambda: build(spec, "search candidate", teacher=ctx.teacher), seed)

        def evaluate_under(b: int, limit: Budget) -> Callable[[tuple[int, ...]], Evaluated | None]:
            def evaluate(cand: tuple[int, ...]) -> Evaluated | None:
                model = None
                if cand not in sized:
                    params = c.space.params(cand, shape[0], k, min(shape[1:]))
                    model = module(params)
                    sized[cand] = (params, count_params(model), count_macs(model, shape))
                params, n_params, macs = sized[cand]
                over = (
                    "params"
                    if limit.params and n_params > limit.params
                    else "macs"
                    if limit.macs and macs > limit.macs  # type: ignore[operator]
                    else None
                )
                if over is None and measure and cand not in latencies:
                    model = model or module(params)
                    latencies[cand] = lat.fn(model, shape)  # type: ignore[misc]
                latency = latencies.get(cand)
                if over is None and limit.latency_ms and latency is not None and latency > limit.latency_ms:  # type: ignore[operator]
                    over = "latency_ms"
                if over is not None:
                    if (b, cand) not in turned_down:
                        turned_down.add((b, cand))
                        rejected[over] += 1
                    return None
                if cand not in scored:
                    model = model or module(params)
                    values = [score(c.proxy, model, x, ctx.teacher, seed=seed + i) for i, x in enumerate(batches)]
                    mean, std = aggregate(values)
                    scored[cand] = Evaluated(cand, params, mean, std, n_params, macs, latency)
                return Evaluated(**scored[cand].__dict__)

            return evaluate

        readings: dict[Hashable, list[float]] = {}
        checks: list[dict[str, Any]] = []

        def confirmed(b: int, limit: Budget, found: list[Evaluated]) -> Evaluated:
            """The best of ``found`` whose latency, measured again, stays within the budget (:mod:`.confirm`)."""
            first_seen: dict[tuple[int, ...], Evaluated] = {}
            for e in found:
                first_seen.setdefault(e.cand, e)
            # best first; among equal scores the earliest, as max() picks
            unique = sorted(first_seen.values(), key=lambda e: -e.score)[:CONFIRM_TRIES]
            budget_ms = float(limit.latency_ms)  # type: ignore[arg-type]
            chosen, made = confirm_choice(
                unique,
                budget_ms,
                c.confirm,
                key=lambda e: e.cand,
                first=lambda e: latencies[e.cand],
                again=lambda e: lat.fn(module(e.params), shape),  # type: ignore[misc]
                label=lambda e: c.space.describe(e.cand),
                readings=readings,
            )
            checks.extend({"budget": b, **m.record()} for m in made)
            for m in made[:-1] if chosen is not None else made:
                ctx.note(
                    f"search: {m.label} measured {m.median:.4g} ms (median of {len(m.readings)} readings), over the "
                    f"latency budget {budget_ms:g} ms when measured again: not chosen"
                )
            if chosen is None:
                raise PipelineError(
                    f"search.budget.latency_ms {budget_ms:g}: none of the {len(made)} best candidates stayed within "
                    f"it when measured again (median of {1 + c.confirm} readings; search.json lists them)",
                    fix="raise the budget, or set search.confirm: 0 to trust one reading per candidate",
                )
            return Evaluated(**{**chosen.__dict__, "latency_ms": statistics.median(readings[chosen.cand])})

        budgets = c.budget.each()
        bar = ctx.progress("search")
        steps = c.population + c.iterations
        bar.start(f"{c.proxy}, aging evolution" + (f", {len(budgets)} budgets" if len(budgets) > 1 else ""),
                  steps * len(budgets))  # fmt: skip
        t0 = time.perf_counter()
        history: list[Evaluated] = []
        winners: list[Evaluated] = []
        for b, limit in enumerate(budgets):  # one evolution per budget (AutoDistil), sharing sized/scored candidates
            try:
                found = aging_evolution(
                    c.space,
                    evaluate_under(b, limit),
                    c.population,
                    c.sample,
                    c.iterations,
                    random.Random(seed),
                    c.crossover,
                    on_step=lambda n, e: bar.advance(1, score=e.score),
                )
            except PipelineError as exc:
                if len(budgets) == 1:
                    raise
                where = ", ".join(f"{k} {v}" for k, v in limit.model_dump(exclude_none=True).items())
                raise PipelineError(f"{exc.message} (budget {where})", fix=exc.fix) from exc
            winner = max(found, key=lambda e: e.score)  # found is never empty: aging_evolution raises
            if measure and lat.source == "measured-host" and limit.latency_ms and c.confirm:
                winner = confirmed(b, limit, found)
            winners.append(winner)
            history += found
        seconds = time.perf_counter() - t0
        best = winners[0]
        front = pareto(history)  # one point per candidate (pareto dedups)
        bar.finish(best_score=best.score, evaluated=len(scored))
        ctx.student_spec = ModelSpec(arch=c.space.arch, params=best.params)
        torch.manual_seed(seed)
        ctx.student = build(ctx.student_spec, "student", teacher=ctx.teacher, base_dir=ctx.config.base_dir)
        if ctx.config.student is not None:
            ctx.note("search replaced the student given in model.yaml")
        doc = {
            "proxy": c.proxy,
            "space": c.space.type,
            "arch": c.space.arch,
            "space_size": c.space.size(),
            "teacher_anatomy": teacher_anatomy,
            "budget": c.budget.model_dump(),
            "latency": lat.describe if measure else None,
            "latency_source": lat.source,
            "latency_from": lat.record() if measure else None,
            "chosen": _row(best, c.space),
            "pareto": [_row(e, c.space) for e in front],
            "history": [_row(e, c.space) for e in history],
            "evaluated_unique": len(scored),
            "per_budget": [
                {"budget": limit.model_dump(exclude_none=True), "chosen": _row(w, c.space)}
                for limit, w in zip(budgets, winners, strict=True)
            ]
            if c.budget.swept()
            else None,
            "confirmed": checks or None,
            "rejected": rejected,
            "scored_worst": sum(not math.isfinite(e.score) for e in scored.values()),
            "seconds": round(seconds, 1),
        }
        with ctx.artifact("search_json", "search.json", "json", precision="-", backend="-") as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
        ctx.metrics["search"] = {k: v for k, v in doc.items() if k != "history"}
        ctx.metrics["student"] = {
            "arch": c.space.arch,
            "params_spec": best.params,
            "params": best.n_params,
            "macs": best.macs,
        }
        ctx.stages.append(
            {
                "stage": "search",
                "model": f"student {c.space.arch} {c.space.describe(best.cand)}",
                "params": best.n_params,
                "macs": best.macs,
                "measured": f"{c.proxy} score {best.score:.4g}",
            }
        )
