#!/usr/bin/env python3
"""Checks the Grafana dashboard and lists the metrics its queries read.

    python3 tests/dashboard_check.py docker/grafana/dashboards/execution-service.json

The dashboard is decoded by the Grafana Foundation SDK's own model
(`Dashboard.from_json`, with the SDK's panel and data-source plugins
registered), then checked against that model:

- every key of the file survives a decode and re-encode, so a field the
  model does not know (a misspelt `gridPos`, an option of another panel
  type) fails instead of being dropped without a word;
- every panel type is one the SDK knows, and every query decodes as a
  Prometheus query with an expression, on the provisioned data source;
- panel ids are unique and the `$instance` variable exists.

On success it prints each metric name the queries use, once, sorted, one a
line on stdout (histogram series `_bucket`/`_sum`/`_count` under their base
name), so a test can look each up in /metrics. Problems go to stderr and
the exit code is 1; when the pinned SDK is not installed, it is 3.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata

# The SDK release the dashboard is checked with; its models follow Grafana
# 11.6, the version docker/compose.yml runs.
SDK_PACKAGE = "grafana-foundation-sdk"
SDK_VERSION = "1769699379!11.6.0"
INSTALL = f"pip install '{SDK_PACKAGE}=={SDK_VERSION}'"

DASHBOARD_UID = "execution-service"
DATASOURCE_UID = "prometheus"
PANEL_TYPES = {"row", "timeseries", "stat"}

# A metric is any PromQL identifier with one of these prefixes, or `up`;
# label names, functions and keywords never have them.
METRIC_PREFIXES = ("execution_", "process_")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
HISTOGRAM_SUFFIX = re.compile(r"_(?:bucket|sum|count)$")


def fail(message: str) -> None:
    print(f"dashboard_check: {message}", file=sys.stderr)
    sys.exit(1)


def missing(message: str) -> None:
    print(f"dashboard_check: {message}", file=sys.stderr)
    sys.exit(3)


def load_sdk():
    try:
        installed = metadata.version(SDK_PACKAGE)
    except metadata.PackageNotFoundError:
        missing(f"{SDK_PACKAGE} is not installed: {INSTALL}")
    if installed != SDK_VERSION:
        missing(f"{SDK_PACKAGE} {installed} is installed, the check is pinned to {SDK_VERSION}: {INSTALL}")
    try:
        from grafana_foundation_sdk.cog import encoder, plugins, runtime
        from grafana_foundation_sdk.models import dashboard, prometheus
    except ImportError as error:
        fail(f"cannot import {SDK_PACKAGE} ({error}): {INSTALL}")
    plugins.register_default_plugins()
    return encoder, runtime, dashboard, prometheus


def lost_keys(source, decoded, path="$"):
    """Paths of `source` that the decoded-and-encoded copy no longer has."""
    if isinstance(source, dict):
        if not isinstance(decoded, dict):
            return [path]
        lost = []
        for key, value in source.items():
            if key not in decoded:
                lost.append(f"{path}.{key}")
            else:
                lost.extend(lost_keys(value, decoded[key], f"{path}.{key}"))
        return lost
    if isinstance(source, list):
        if not isinstance(decoded, list) or len(decoded) != len(source):
            return [path]
        lost = []
        for index, (item, copy) in enumerate(zip(source, decoded)):
            lost.extend(lost_keys(item, copy, f"{path}[{index}]"))
        return lost
    return [] if source == decoded else [f"{path} (was {source!r}, read as {decoded!r})"]


def all_panels(panels):
    for panel in panels or []:
        yield panel
        yield from all_panels(getattr(panel, "panels", None))


def metric_names(expr: str) -> set[str]:
    names = set()
    for token in IDENTIFIER.findall(STRING.sub('""', expr)):
        if token.startswith(METRIC_PREFIXES) or token == "up":
            names.add(HISTOGRAM_SUFFIX.sub("", token))
    return names


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        fail(f"usage: {argv[0]} DASHBOARD.json")
    encoder, runtime, dashboard, prometheus = load_sdk()

    try:
        with open(argv[1], encoding="utf-8") as file:
            source = json.load(file)
    except (OSError, ValueError) as error:
        fail(f"cannot read {argv[1]}: {error}")
    try:
        model = dashboard.Dashboard.from_json(source)
        encoded = json.loads(json.dumps(model, cls=encoder.JSONEncoder))
    except Exception as error:  # the SDK raises whatever its decoders hit
        fail(f"{SDK_PACKAGE} {SDK_VERSION} cannot load {argv[1]}: {type(error).__name__}: {error}")

    problems = [f"not in the {SDK_PACKAGE} model: {path}" for path in lost_keys(source, encoded)]
    if model.uid != DASHBOARD_UID:
        problems.append(f"uid is {model.uid!r}, not {DASHBOARD_UID!r}")
    variables = [variable.name for variable in model.templating.list_val or []]
    if "instance" not in variables:
        problems.append("no $instance template variable")

    names: set[str] = set()
    seen_ids: set[int] = set()
    for panel in all_panels(model.panels):
        title = panel.title or "(untitled)"
        if panel.id_val in seen_ids:
            problems.append(f"panel {title!r}: id {panel.id_val} used twice")
        seen_ids.add(panel.id_val)
        if isinstance(panel, dashboard.RowPanel):
            continue
        if panel.type_val not in PANEL_TYPES or runtime.panelcfg_config(panel.type_val) is None:
            problems.append(f"panel {title!r}: type {panel.type_val!r} is not one of {sorted(PANEL_TYPES)}")
        if not panel.targets:
            problems.append(f"panel {title!r}: no queries")
        for target in panel.targets or []:
            if not isinstance(target, prometheus.Dataquery):
                problems.append(f"panel {title!r}: a query is not a Prometheus query")
                continue
            datasource = target.datasource or panel.datasource
            if datasource is None or datasource.uid != DATASOURCE_UID:
                problems.append(f"panel {title!r} query {target.ref_id}: data source is not uid {DATASOURCE_UID!r}")
            found = metric_names(target.expr or "")
            if not found:
                problems.append(f"panel {title!r} query {target.ref_id}: no metric in {target.expr!r}")
            names |= found

    if problems:
        fail("\n  ".join([f"{argv[1]}:", *problems]))
    for name in sorted(names):
        print(name)


if __name__ == "__main__":
    main(sys.argv)
