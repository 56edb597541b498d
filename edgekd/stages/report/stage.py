"""report: write ``result.json`` (for pipelines), ``report.md`` and ``report.html`` (for people) into the run folder."""

from __future__ import annotations

import json

from edgekd.core.errors import ConstraintError
from edgekd.core.schema import Strict
from edgekd.pipeline.context import Context
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.report.render import render_html, render_markdown
from edgekd.stages.report.result import build_result


class ReportConfig(Strict):
    pass


@register_pass
class Report(Pass):
    name = "report"
    Config = ReportConfig
    produces = frozenset({"reported"})
    cacheable = False

    def run(self, ctx: Context) -> None:
        result = build_result(ctx, ctx.records)
        unmet = {k: c for k, c in result["constraints"].items() if c["met"] is False}
        if unmet:  # the compile is not finished: the manager writes result.failed.json and report.failed.md
            raise ConstraintError(
                "constraints not met: "
                + "; ".join(f"{k} {c['value']} > limit {c['limit']} ({c['artifact']})" for k, c in unmet.items()),
                fix="relax the constraints in model.yaml, or compress further (prune more, INT8, a smaller student)",
                saved=[a.path for a in ctx.artifacts.values()],
            )
        with ctx.artifact("report_md", "report.md", "markdown", precision="-", backend="-") as tmp:
            tmp.write_text(render_markdown(result, ctx.stages_run))
        with ctx.artifact("report_html", "report.html", "html", precision="-", backend="-") as tmp:
            tmp.write_text(render_html(result, ctx.stages_run))
        # result.json is written last: pipelines take its presence as "the compile finished"
        with ctx.artifact("result_json", "result.json", "json", precision="-", backend="-") as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
