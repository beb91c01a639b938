"""Notebook 08's Prometheus files (course_lib/prometheus/): load them, and check them without promtool.

promtool, Prometheus's own checker, is a Go program that is not on PyPI, so the course checks what can go wrong
between these files and its APIs: the YAML's structure, durations, severities, rule files that exist, and that every
metric and label a rule uses is one the APIs export. A renamed metric or label would otherwise leave an alert that
silently never fires. PromQL's grammar itself is not checked beyond balanced brackets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from course_lib.monitoring import parse_metrics

PROMETHEUS_DIR = Path(__file__).resolve().parent / "prometheus"
TARGET_LABELS = frozenset({"job", "instance"})  # labels Prometheus adds to every series it scrapes
PROMETHEUS_OWN = {"up": set(TARGET_LABELS)}  # series Prometheus makes itself for each target
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SEVERITIES = frozenset({"page", "ticket"})
PROMQL_WORDS = frozenset(
    "sum min max avg count stddev stdvar topk bottomk quantile count_values group by without on ignoring "
    "group_left group_right bool and or unless offset rate irate increase delta idelta histogram_quantile "
    "abs absent absent_over_time clamp_min clamp_max ceil floor round sqrt exp ln log2 log10 time vector scalar "
    "avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time label_replace "
    "label_join sort sort_desc inf nan".split()
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def load(name: str) -> dict[str, Any]:
    """One of the course's Prometheus files, parsed ("prometheus.yml" or "alerts.yml")."""
    return yaml.safe_load((PROMETHEUS_DIR / name).read_text(encoding="utf-8"))


def exported_series(metrics_text: str) -> dict[str, set[str]]:
    """{sample name: label names} of a /metrics body, as Prometheus stores them (_total, _bucket, _count …)."""
    series: dict[str, set[str]] = {}
    for family in parse_metrics(metrics_text).values():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The metric names of a PromQL expression with the label names each matches on, and the grouping labels."""
    grouping = {label.strip() for _, labels in _GROUPING.findall(expr) for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors: [5m]
    found = []
    for name, matchers, call in _SELECTOR.findall(text):
        if call or name in PROMQL_WORDS:
            continue
        found.append((name, {label for label, _ in _MATCHER.findall(_STRING.sub('""', matchers))}))
    return found, grouping


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for char in _STRING.sub('""', expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


def check_rules(rules: dict[str, Any], exported: dict[str, set[str]]) -> list[str]:
    """Problems of an alert-rule file against the series the APIs export (an empty list: none found)."""
    known = {**PROMETHEUS_OWN, **exported}
    groups = rules.get("groups") or []
    problems = [] if groups else ["no groups"]
    for group in groups:
        if not group.get("rules"):
            problems.append(f"group {group.get('name')!r} has no rules")
        for rule in group.get("rules") or []:
            problems += rule_problems(rule, known)
    return problems


def rule_problems(rule: dict[str, Any], known: dict[str, set[str]]) -> list[str]:
    """Problems of one rule: its expr, duration, severity, summary, and the metrics and labels it uses."""
    name = rule.get("alert") or rule.get("record") or "?"
    expr = str(rule.get("expr", ""))
    problems = []
    if not expr.strip():
        problems.append(f"{name}: no expr")
    if not _balanced(expr):
        problems.append(f"{name}: unbalanced brackets in expr")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        problems.append(f"{name}: 'for: {rule['for']}' is not a Prometheus duration such as 5m")
    if "alert" in rule and rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append(f"{name}: labels.severity must be one of {sorted(SEVERITIES)}")
    if "alert" in rule and not rule.get("annotations", {}).get("summary"):
        problems.append(f"{name}: no annotations.summary")
    used, grouping = selectors(expr)
    labels_here = set(TARGET_LABELS)
    for metric, matched in used:
        if metric not in known:
            problems.append(f"{name}: metric {metric} is not exported by the APIs")
            continue
        labels_here |= known[metric]
        missing = matched - known[metric] - TARGET_LABELS
        problems += [f"{name}: metric {metric} has no label {label}" for label in sorted(missing)]
    unknown = grouping - labels_here
    problems += [f"{name}: grouping label {label} is on none of its metrics" for label in sorted(unknown)]
    return problems


def check_config(config: dict[str, Any], folder: Path = PROMETHEUS_DIR) -> list[str]:
    """Problems of a prometheus.yml: intervals, rule files present in `folder`, unique jobs, host:port targets."""
    problems = []
    for key in ("scrape_interval", "evaluation_interval"):
        value = str(config.get("global", {}).get(key, "1m"))
        if not DURATION.match(value):
            problems.append(f"global.{key}: {value!r} is not a duration")
    for rule_file in config.get("rule_files", []):
        if not (folder / rule_file).is_file():
            problems.append(f"rule file {rule_file} not found beside the configuration")
    jobs = [job.get("job_name") for job in config.get("scrape_configs", [])]
    if not jobs or len(set(jobs)) != len(jobs) or None in jobs:
        problems.append(f"scrape_configs need unique job_name values, found {jobs}")
    for job in config.get("scrape_configs", []):
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"{job.get('job_name')}: the course's APIs serve /metrics")
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                if not re.fullmatch(r"[A-Za-z0-9_.-]+:\d{1,5}", str(target)):
                    problems.append(f"{job.get('job_name')}: target {target!r} is not host:port")
    return problems
