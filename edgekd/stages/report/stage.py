"""report: write ``result.json`` (for pipelines), ``report.md`` and ``report.html`` (for people) into the run folder."""

from __future__ import annotations

import json

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
        with ctx.artifact("report_md", "report.md", "markdown", precision="-", backend="-") as tmp:
            tmp.write_text(render_markdown(result, ctx.stages_run))
        with ctx.artifact("report_html", "report.html", "html", precision="-", backend="-") as tmp:
            tmp.write_text(render_html(result, ctx.stages_run))
        # result.json is written last: pipelines take its presence as "the compile finished"
        with ctx.artifact("result_json", "result.json", "json", precision="-", backend="-") as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
