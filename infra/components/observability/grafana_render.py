"""The second renderer of the dashboard model: Grafana dashboard JSON, built with grafana-foundation-sdk.

The same `dashboard_model.Dashboard` objects that become Cloud Monitoring dashboards become Grafana
dashboards here, panel for panel, query for query:
- a metric filter -> a Cloud Monitoring data source `timeSeriesList` query (filter clauses as the data
  source's tokens: one value `=`, several values a `=~` full-match regex, exclusions `!=`);
- a ratio -> its two filters as hidden queries A and B plus a server-side math expression `$A / $B`;
- PromQL -> the Cloud Monitoring data source's PromQL query type (Managed Service for Prometheus);
- ClickHouse SQL -> the ClickHouse data source.
The SDK (pinned in requirements.txt) has builders for dashboards, panels, the Cloud Monitoring
time-series-list query and expressions; its generated models predate the data source's `promQL` query
type and it has no ClickHouse plugin, so those two query kinds are the small typed classes below.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import expr as expr_b
from grafana_foundation_sdk.builders import googlecloudmonitoring as gcm_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import text as text_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import text as text_m

from .dashboard_model import (COLUMNS, Dashboard, Filter, PromQL, Ratio, Scorecard, Section, Series, SqlPanel, Text,
                              Threshold, XyChart)
from .queries import MetricFilter

GRID = 24  # Grafana's grid width; the model's grid is Cloud Monitoring's 48 columns
CLOUD_MONITORING = dash_m.DataSourceRef(type_val="stackdriver", uid="netra-cloud-monitoring")
CLICKHOUSE = dash_m.DataSourceRef(type_val="grafana-clickhouse-datasource", uid="netra-clickhouse")
EXPRESSION = dash_m.DataSourceRef(type_val="__expr__", uid="__expr__")
COLORS = {"RED": "red", "YELLOW": "yellow"}


class PromQLQuery(cogvariants.Dataquery):
    """Cloud Monitoring data source, query type `promQL` (Grafana 10.3+)."""

    def __init__(self, ref_id: str, project: str, expr: str, legend: Optional[str]) -> None:
        self.ref_id, self.project, self.expr, self.legend = ref_id, project, expr, legend

    def to_json(self) -> dict:
        out = {"refId": self.ref_id, "datasource": CLOUD_MONITORING, "queryType": "promQL",
               "promQLQuery": {"projectName": self.project, "expr": self.expr, "step": "60s"}}
        if self.legend:
            out["aliasBy"] = self.legend
        return out


class ClickHouseQuery(cogvariants.Dataquery):
    """grafana-clickhouse-datasource (v4) raw SQL query."""

    def __init__(self, ref_id: str, sql: str, fmt: str) -> None:
        self.ref_id, self.sql, self.fmt = ref_id, sql, fmt

    def to_json(self) -> dict:
        return {"refId": self.ref_id, "datasource": CLICKHOUSE, "editorType": "sql", "rawSql": self.sql,
                "format": 1 if self.fmt == "table" else 0, "queryType": "table" if self.fmt == "table" else "timeseries"}


class _Built(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: cogvariants.Dataquery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


def filter_tokens(f: MetricFilter) -> list[str]:
    """Grafana's Cloud Monitoring filter tokens: key, operator, value, "AND", key, ..."""
    tokens: list[str] = []
    for key, op, values in f.clauses():
        if tokens:
            tokens.append("AND")
        if len(values) == 1:
            tokens += [key, op, values[0]]
        else:  # one_of(...) == a full-match alternation
            tokens += [key, "=~" if op == "=" else "!=~", "|".join(re.escape(v) for v in values)]
    return tokens


def _legend(template: Optional[str]) -> Optional[str]:
    """Cloud Monitoring's ${resource.labels.x} -> the data source's {{resource.label.x}}."""
    if not template:
        return None
    return re.sub(r"\$\{(resource|metric)\.labels\.([A-Za-z0-9_]+)\}", r"{{\1.label.\2}}", template)


def _time_series_list(ref: str, project: str, f: Filter, legend: Optional[str], hide: bool = False):
    agg = f.aggregation
    tsl = (gcm_b.TimeSeriesList().project_name(project).filters(filter_tokens(f.filter))
           .per_series_aligner(agg.per_series_aligner).alignment_period(f"+{agg.alignment_period}")
           .cross_series_reducer(agg.cross_series_reducer or "REDUCE_NONE").group_bys(list(agg.group_by_fields)))
    q = (gcm_b.CloudMonitoringQuery().ref_id(ref).query_type("timeSeriesList").datasource(CLOUD_MONITORING)
         .time_series_list(tsl))
    if legend:
        q = q.alias_by(legend)
    return q.hide(True) if hide else q


def targets(queries: Iterable[tuple[object, Optional[str]]], project: str) -> list:
    """Grafana targets of a panel's (query, legend) pairs, ref ids A, B, C, ... in order."""
    out: list = []
    refs = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for query, legend in queries:
        if isinstance(query, Filter):
            out.append(_time_series_list(next(refs), project, query, _legend(legend)))
        elif isinstance(query, Ratio):
            a, b, c = next(refs), next(refs), next(refs)
            out.append(_time_series_list(a, project, query.numerator, None, hide=True))
            out.append(_time_series_list(b, project, query.denominator, None, hide=True))
            out.append(expr_b.TypeMath().ref_id(c).datasource(EXPRESSION).expression(f"${a} / ${b}"))
        elif isinstance(query, PromQL):
            out.append(_Built(PromQLQuery(next(refs), project, query.query_text, legend)))
        else:
            raise TypeError(f"no Grafana rendering for {type(query).__name__}")
    return out


def _thresholds(marks: Iterable[Threshold]):
    marks = list(marks)
    below = bool(marks) and all(m.direction == "BELOW" for m in marks)
    steps = [dash_m.Threshold(value=None, color=COLORS[marks[0].color] if below else "green")]
    for m in sorted(marks, key=lambda m: m.value):
        steps.append(dash_m.Threshold(value=m.value, color="green" if below else COLORS.get(m.color, "red")))
    return dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(steps)


def _grid(x: int, y: int, w: int, h: int) -> dash_m.GridPos:
    scale = COLUMNS // GRID
    return dash_m.GridPos(x=x // scale, y=y // scale, w=max(1, w // scale), h=max(1, h // scale))


def panel(widget, project: str, pos: dash_m.GridPos):
    """One widget of the model as a Grafana panel builder (a row for a Section)."""
    if isinstance(widget, Section):
        return dash_b.Row(widget.title).grid_pos(pos)
    if isinstance(widget, Text):
        return (text_b.Panel().title(widget.title).grid_pos(pos).mode(text_m.TextMode.MARKDOWN)
                .content(widget.content))
    if isinstance(widget, SqlPanel):
        p = ts_b.Panel() if widget.format == "time_series" else _table()
        return (p.title(widget.title).grid_pos(pos).datasource(CLICKHOUSE)
                .targets([_Built(ClickHouseQuery("A", widget.sql.text, widget.format))]))
    if isinstance(widget, Scorecard):
        return (stat_b.Panel().title(widget.title).grid_pos(pos).datasource(CLOUD_MONITORING)
                .targets(targets([(widget.query, None)], project)).thresholds(_thresholds(widget.thresholds))
                .graph_mode(common_m.BigValueGraphMode.AREA))
    if isinstance(widget, XyChart):
        p = (ts_b.Panel().title(widget.title).grid_pos(pos).datasource(CLOUD_MONITORING)
             .targets(targets([(s.query, s.legend) for s in widget.series], project))
             .axis_label(widget.y_label)
             .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common_m.LegendDisplayMode.LIST)
                     .placement(common_m.LegendPlacement.BOTTOM)))
        if widget.thresholds:
            p = p.thresholds(_thresholds(widget.thresholds)).thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common_m.GraphTresholdsStyleMode.LINE))
        return p
    raise TypeError(f"no Grafana rendering for {type(widget).__name__}")


def _table():
    from grafana_foundation_sdk.builders import table as table_b

    return table_b.Panel()


def uid(title: str) -> str:
    return "netra-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render(d: Dashboard, project: str) -> dict:
    """The Grafana dashboard JSON model of `d` (what Grafana's file provisioning reads)."""
    b = (dash_b.Dashboard(d.display_name).uid(uid(d.display_name)).tags(["netra", *sorted(d.labels)])
         .editable().time("now-6h", "now").refresh("1m").timezone("utc"))
    for n, (tile, widget) in enumerate(zip(d.tiles(), d.widgets), 1):
        pos = _grid(tile["xPos"], tile["yPos"], tile["width"], tile["height"])
        built = panel(widget, project, pos).id(n)
        b = b.with_row(built) if isinstance(widget, Section) else b.with_panel(built)
    return b.build()


def dumps(d: Dashboard, project: str) -> str:
    return JSONEncoder(sort_keys=True, separators=(",", ":")).encode(render(d, project))
