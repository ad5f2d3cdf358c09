"""The alert rules and the Grafana dashboard in docs/ops load, and name only exported metrics.

The rules are read by a strict reader of the YAML they are written in (block mappings and
sequences, quoted and plain scalars, ``|`` blocks; anything else is refused), checked for
Prometheus' rule shape, and, where ``promtool`` is installed, checked and unit-tested by it
as well. Each expression's metric names must be sample names the processes export.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from stream_outbox.worker import metrics

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "ops"
RULES = OPS / "stream-outbox-alerts.yml"
RULES_TESTS = OPS / "stream-outbox-alerts.test.yml"
DASHBOARD = OPS / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# Series Prometheus adds to every scrape rather than the processes exporting them.
SCRAPE_SERIES = {"up"}
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk"}
AGGREGATIONS |= {"bottomk", "quantile", "count_values"}
FUNCTIONS = {"rate", "irate", "increase", "delta", "deriv", "histogram_quantile", "vector"}
FUNCTIONS |= {"abs", "clamp_min", "clamp_max", "absent", "time", "timestamp", "scalar"}
FUNCTIONS |= {f"{f}_over_time" for f in ("avg", "min", "max", "sum", "count", "last")}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
KEYWORDS |= {"and", "or", "unless", "offset"}
DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")

# -- a strict reader of the YAML the rules use ------------------------------------------

_KEY = re.compile(r"^([A-Za-z_][\w.-]*):(?: +(.*))?$")


class _Reader:
    def __init__(self, text: str) -> None:
        assert "\t" not in text, "tabs in YAML"
        self.lines = text.splitlines()
        self.pos = 0

    def peek(self) -> tuple[int, str] | None:
        """The next line with content, as (indent, content), skipping blanks and comments."""
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            content = line.strip()
            if content and not content.startswith("#"):
                return len(line) - len(line.lstrip(" ")), content
            self.pos += 1
        return None

    def node(self, indent: int) -> Any:
        nxt = self.peek()
        assert nxt and nxt[0] >= indent, f"line {self.pos + 1}: expected a nested block"
        if nxt[1] == "-" or nxt[1].startswith("- "):
            return self.sequence(nxt[0])
        return self.mapping(nxt[0])

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (nxt := self.peek()) and nxt[0] == indent and not nxt[1].startswith("-"):
            match = _KEY.match(nxt[1])
            assert match, f"line {self.pos + 1}: not a 'key: value' line: {nxt[1]!r}"
            key, rest = match.group(1), match.group(2)
            assert key not in out, f"line {self.pos + 1}: duplicate key {key!r}"
            self.pos += 1
            if rest is None:
                out[key] = self.node(indent + 1)
            elif rest == "|":
                out[key] = self.block(indent)
            else:
                out[key] = scalar(rest, self.pos)
        assert not nxt or nxt[0] <= indent, f"line {self.pos + 1}: unexpected indentation"
        return out

    def sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while (nxt := self.peek()) and nxt[0] == indent and nxt[1].startswith("- "):
            item = nxt[1][2:].strip()
            if _KEY.match(item):  # "- key: value" opens a mapping two columns in
                self.lines[self.pos] = " " * (indent + 2) + item
                out.append(self.mapping(indent + 2))
            else:
                self.pos += 1
                out.append(scalar(item, self.pos))
        return out

    def block(self, indent: int) -> str:
        """A ``|`` literal block: the following lines indented deeper, or blank."""
        taken: list[str] = []
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
                break
            taken.append(line)
            self.pos += 1
        while taken and not taken[-1].strip():
            taken.pop()
        assert taken, f"line {self.pos}: empty '|' block"
        cut = min(len(t) - len(t.lstrip(" ")) for t in taken if t.strip())
        return "\n".join(t[cut:] for t in taken) + "\n"


def scalar(text: str, line: int) -> str:
    """A quoted or plain scalar; flow collections, anchors, tags and folds are refused."""
    if text.startswith('"'):
        value = json.loads(text)
        assert isinstance(value, str)
        return value
    if text.startswith("'"):
        assert text.endswith("'") and len(text) > 1, f"line {line}: unclosed quote"
        return text[1:-1].replace("''", "'")
    text = text.split(" #", 1)[0].strip()
    assert text and text[0] not in "{[&*!|>%@`", f"line {line}: unsupported YAML: {text!r}"
    assert ": " not in text, f"line {line}: a plain scalar holding ': '"
    return text


def load_yaml(text: str) -> Any:
    reader = _Reader(text)
    value = reader.node(0)
    assert reader.peek() is None, f"line {reader.pos + 1}: text after the document"
    return value


# -- PromQL names and the exporter's output ----------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects; an unknown function fails."""
    assert expr.count("(") == expr.count(")"), f"unbalanced parentheses: {expr}"
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r"\1", text)
    assert not re.search(r"[{}\[\]$]", text), f"unbalanced selectors or a stray variable: {expr}"
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, after = match.group(), text[match.end() :].lstrip()
        if word in KEYWORDS | AGGREGATIONS:
            continue
        if after.startswith("("):
            assert word in FUNCTIONS, f"unknown function {word!r} in {expr}"
        else:
            names.add(word)
    return names


def exported_names() -> set[str]:
    """Sample names of the metrics endpoint, each labelled metric given one child for it."""
    touched = []
    for name in metrics.__all__:
        collector = getattr(metrics, name)
        labelnames = collector._labelnames  # prometheus_client keeps no public accessor
        if labelnames:
            values = ["ops-check"] * len(labelnames)
            collector.labels(*values)
            touched.append((collector, values))
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        for collector, values in touched:
            collector.remove(*values)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def unknown_metrics(exprs: list[str]) -> set[str]:
    named = set().union(*(metric_names(e) for e in exprs))
    return named - exported_names() - SCRAPE_SERIES


def product_families() -> set[str]:
    """The family names of stream_outbox.worker.metrics (a counter's without ``_total``)."""
    return {family.name for name in metrics.__all__ for family in getattr(metrics, name).describe()}


# -- the rules -----------------------------------------------------------------------------


def operations_anchors() -> set[str]:
    """GitHub's anchors of the headings of docs/operations.md."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def rules() -> list[dict[str, Any]]:
    document = load_yaml(RULES.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and set(document) == {"groups"}
    groups = document["groups"]
    assert isinstance(groups, list) and groups
    for group in groups:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group.get("name")
        assert isinstance(group.get("rules"), list) and group["rules"]
    return [rule for group in groups for rule in group["rules"]]


def check_rule(rule: dict[str, Any], anchors: set[str]) -> None:
    name = rule.get("alert")
    assert isinstance(name, str) and re.fullmatch(r"[A-Za-z_]\w*", name), rule
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
    assert DURATION.match(rule.get("for", "")), f"{name}: 'for' is not a duration"
    assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
    notes = rule.get("annotations", {})
    assert {"summary", "description", "runbook_url"} <= set(notes), name
    page, _, anchor = notes["runbook_url"].partition("#")
    assert page == "docs/operations.md" and anchor in anchors, f"{name}: runbook {anchor!r}"


def test_the_rules_have_prometheus_shape_and_point_to_the_runbook() -> None:
    anchors = operations_anchors()
    loaded = rules()
    for rule in loaded:
        check_rule(rule, anchors)
    assert len({r["alert"] for r in loaded}) == len(loaded), "duplicate alert names"


def test_the_rules_cover_lag_failures_429s_and_down_processes() -> None:
    exprs = [rule["expr"] for rule in rules()]
    named = set().union(*(metric_names(e) for e in exprs))
    assert {
        "stream_outbox_oldest_pending_age_seconds",
        "stream_outbox_failed_rows",
        "stream_outbox_stream_calls_total",
        "stream_outbox_reconciles_total",
        "up",
    } <= named
    assert any('status="429"' in e for e in exprs)
    assert any(re.search(r'up\{job="stream-outbox"\}\s*==\s*0', e) for e in exprs)


def test_the_rules_name_only_exported_metrics() -> None:
    assert unknown_metrics([rule["expr"] for rule in rules()]) == set()


def test_promtool_checks_and_runs_the_rules() -> None:
    """Debian's ``prometheus`` package brings promtool; .ci/run installs it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (apt-get install prometheus)")
    for command in (["check", "rules", RULES.name], ["test", "rules", RULES_TESTS.name]):
        done = subprocess.run([promtool, *command], cwd=OPS, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# -- the dashboard -------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in board["panels"] for t in panel["targets"]]


def check_panel(panel: dict[str, Any], board_vars: set[str]) -> None:
    assert isinstance(panel["id"], int) and panel["type"] and panel["title"], panel
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    grid = panel["gridPos"]
    assert set(grid) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in grid.values())
    assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    assert panel["targets"], panel["title"]
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(set(ref_ids)) == len(ref_ids), panel["title"]
    for target in panel["targets"]:
        assert target["datasource"] == panel["datasource"] and target["expr"].strip()
        used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__interval"}
        assert used <= board_vars, f"{panel['title']}: undefined variables {used - board_vars}"


def cells(grid: dict[str, int]) -> set[tuple[int, int]]:
    xs, ys = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
    return {(x, y) for x in xs for y in ys}


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids), "duplicate panel ids"
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        check_panel(panel, set(variables))
        assert not taken & cells(panel["gridPos"]), f"{panel['title']} overlaps another panel"
        taken |= cells(panel["gridPos"])


def test_the_dashboard_names_only_exported_metrics_and_shows_each_of_them() -> None:
    exprs = [t["expr"] for t in targets(dashboard())]
    assert unknown_metrics(exprs) == set()
    named = set().union(*(metric_names(e) for e in exprs))
    shown = {family for family in product_families() if any(n.startswith(family) for n in named)}
    assert shown == product_families()
    assert any("histogram_quantile" in e and "_bucket" in e for e in exprs)


# -- the checks themselves -----------------------------------------------------------------


def test_a_misspelled_or_suffixless_metric_is_reported() -> None:
    assert unknown_metrics(
        [
            'sum(rate(stream_outbox_stream_call_total{status="429"}[5m])) > 0',
            "histogram_quantile(0.9, sum by (le) (rate(stream_outbox_reconcile_seconds[5m])))",
            "max(stream_outbox_pending_rows) > 0 unless on () up == 0",
        ]
    ) == {"stream_outbox_stream_call_total", "stream_outbox_reconcile_seconds"}


def test_the_yaml_reader_refuses_what_it_does_not_understand() -> None:
    assert load_yaml("a:\n  - b: 'c'\n    d: |\n      x\n      y\n  - e\n") == {
        "a": [{"b": "c", "d": "x\ny\n"}, "e"]
    }
    for text in ("a: {b: c}\n", "a: &x b\n", "a: >\n  b\n", "a:\nb\n  c: d\n", "a: b: c\n"):
        try:
            load_yaml(text)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {text!r}")
