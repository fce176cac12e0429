"""Typed builders for Cloud Monitoring dashboards (the subset of the Dashboard v1 schema this stack uses).

Each class maps to a message of google.monitoring.dashboard.v1 and serializes to its JSON form
(camelCase), so a misspelt field is a Python error here and an unknown field fails the strict-parse
test against the official types. Kept free of the protobuf runtime so the plan stays fast.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from infra.components.clickhouse.schema import Sql

from .queries import MetricFilter

COLUMNS = 48  # mosaic grid width


@dataclass(frozen=True)
class Aggregation:
    alignment_period: str = "60s"
    per_series_aligner: str = "ALIGN_RATE"
    cross_series_reducer: Optional[str] = None
    group_by_fields: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"alignmentPeriod": self.alignment_period, "perSeriesAligner": self.per_series_aligner}
        if self.cross_series_reducer:
            out["crossSeriesReducer"] = self.cross_series_reducer
        if self.group_by_fields:
            out["groupByFields"] = list(self.group_by_fields)
        return out


@dataclass(frozen=True)
class Filter:
    """TimeSeriesFilter: a metric filter and how to aggregate it."""

    filter: "MetricFilter"
    aggregation: Aggregation = Aggregation()

    def to_json(self) -> dict:
        return {"filter": str(self.filter), "aggregation": self.aggregation.to_json()}

    def query(self) -> dict:
        return {"timeSeriesFilter": self.to_json()}


@dataclass(frozen=True)
class Ratio:
    """TimeSeriesFilterRatio: numerator / denominator, each aggregated alike."""

    numerator: Filter
    denominator: Filter

    def query(self) -> dict:
        return {"timeSeriesFilterRatio": {"numerator": self.numerator.to_json(),
                                          "denominator": self.denominator.to_json()}}


@dataclass(frozen=True)
class PromQL:
    query_text: str

    def query(self) -> dict:
        return {"prometheusQuery": self.query_text}


Query = Union[Filter, Ratio, PromQL]


@dataclass(frozen=True)
class Series:
    """XyChart.DataSet."""

    query: Query
    legend: Optional[str] = None
    plot_type: str = "LINE"
    unit: Optional[str] = None

    def to_json(self) -> dict:
        tsq = self.query.query()
        if self.unit:
            tsq["unitOverride"] = self.unit
        out = {"timeSeriesQuery": tsq, "plotType": self.plot_type}
        if self.legend:
            out["legendTemplate"] = self.legend
        if isinstance(self.query, PromQL):
            out["minAlignmentPeriod"] = "60s"
        return out


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str = ""
    color: str = "RED"  # YELLOW | RED
    direction: str = "ABOVE"  # ABOVE | BELOW

    def to_json(self) -> dict:
        out = {"value": self.value, "color": self.color, "direction": self.direction}
        if self.label:
            out["label"] = self.label
        return out


@dataclass(frozen=True)
class XyChart:
    title: str
    series: Sequence[Series]
    y_label: str = ""
    thresholds: Sequence[Threshold] = ()
    width: int = 24
    height: int = 16

    def widget(self) -> dict:
        chart = {"dataSets": [s.to_json() for s in self.series],
                 "yAxis": {"label": self.y_label, "scale": "LINEAR"},
                 "chartOptions": {"mode": "COLOR"}}
        if self.thresholds:
            chart["thresholds"] = [t.to_json() for t in self.thresholds]
        return {"title": self.title, "xyChart": chart}


@dataclass(frozen=True)
class Scorecard:
    title: str
    query: Query
    thresholds: Sequence[Threshold] = ()
    width: int = 12
    height: int = 8

    def widget(self) -> dict:
        card = {"timeSeriesQuery": self.query.query(), "sparkChartView": {"sparkChartType": "SPARK_LINE"}}
        if self.thresholds:
            card["thresholds"] = [t.to_json() for t in self.thresholds]
        return {"title": self.title, "scorecard": card}


@dataclass(frozen=True)
class Text:
    content: str
    title: str = ""
    width: int = 48
    height: int = 4

    def widget(self) -> dict:
        return {"title": self.title, "text": {"content": self.content, "format": "MARKDOWN"}}


@dataclass(frozen=True)
class Section:
    """A full-width header starting a new row."""

    title: str
    subtitle: str = ""
    width: int = 48
    height: int = 4

    def widget(self) -> dict:
        return {"title": self.title, "sectionHeader": {"subtitle": self.subtitle, "dividerBelow": True}}


@dataclass(frozen=True)
class SqlPanel:
    """A ClickHouse query (the analytics table). Grafana runs it through its ClickHouse data source;
    Cloud Monitoring cannot query ClickHouse, so its dashboard shows the same panel as the query text
    with a pointer to Grafana (both dashboards list the same panels)."""

    title: str
    sql: Sql
    format: str = "table"  # table | time_series
    width: int = 24
    height: int = 16

    def widget(self) -> dict:
        return {"title": self.title, "text": {"format": "MARKDOWN", "content": (
            "ClickHouse analytics query; its results are in the Grafana dashboard of the same name.\n\n"
            f"```sql\n{self.sql.text}\n```")}}


Widget = Union[XyChart, Scorecard, Text, Section, SqlPanel]


@dataclass(frozen=True)
class Dashboard:
    display_name: str
    widgets: Sequence[Widget]
    labels: dict = field(default_factory=dict)

    def tiles(self) -> list[dict]:
        """Place widgets left to right, wrapping at the grid width (a Section always starts a row)."""
        tiles, x, y, row_h = [], 0, 0, 0
        for w in self.widgets:
            if x + w.width > COLUMNS or (isinstance(w, Section) and x):
                x, y, row_h = 0, y + row_h, 0
            tiles.append({"xPos": x, "yPos": y, "width": w.width, "height": w.height, "widget": w.widget()})
            x, row_h = x + w.width, max(row_h, w.height)
        return tiles

    def to_json(self) -> dict:
        out = {"displayName": self.display_name, "mosaicLayout": {"columns": COLUMNS, "tiles": self.tiles()}}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
