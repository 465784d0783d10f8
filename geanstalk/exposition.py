"""Prometheus text format 0.0.4 and OpenMetrics 1.0.0, written by hand.

The output is byte for byte what prometheus_client's own writers produce
for the same families (the tests render both and compare), so a scraper
sees exactly what it would from an official client library, and a server
without the ``metrics`` extra can still serve /metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from geanstalk.metrics import COUNTER, INFO, Family, Labels

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def format_value(value: float) -> str:
    """A sample value as Go's strconv prints a float64 (what Prometheus expects)."""
    if type(value) is int and -(10**15) < value < 1_000_000:
        return f"{value}.0"  # what the float's repr would be, without making it
    d = float(value)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _label_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: Labels, cache: dict[Labels, str]) -> str:
    """The {...} of a sample; the same label sets recur in every family of a
    scrape (one per tube), so each is written once per scrape."""
    text = cache.get(labels)
    if text is None:
        if labels:
            pairs = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels))
            text = "{" + pairs + "}"
        else:
            text = ""
        cache[labels] = text
    return text


def render_text(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    cache: dict[Labels, str] = {}
    for f in families:
        name, kind = f.name, f.type
        if kind == COUNTER:
            name += "_total"
        elif kind == INFO:
            name += "_info"
            kind = "gauge"
        help_text = f.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        out.extend(
            f"{sname}{_labels(labels, cache)} {format_value(value)}\n"
            for sname, labels, value in f.samples
        )
    return "".join(out).encode("utf-8")


def render_openmetrics(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    cache: dict[Labels, str] = {}
    for f in families:
        help_text = _label_value(f.help)
        out.append(f"# HELP {f.name} {help_text}\n# TYPE {f.name} {f.type}\n")
        out.extend(
            f"{sname}{_labels(labels, cache)} {format_value(value)}\n"
            for sname, labels, value in f.samples
        )
    out.append("# EOF\n")
    return "".join(out).encode("utf-8")


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics before the text format
    (Prometheus sends both, with q-values, and prefers OpenMetrics)."""
    best_om = best_text = -1.0
    for part in accept.split(","):
        fields = [p.strip() for p in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for p in fields[1:]:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media == "application/openmetrics-text":
            best_om = max(best_om, q)
        elif media in ("text/plain", "*/*", "text/*"):
            best_text = max(best_text, q)
    return best_om > 0 and best_om >= best_text
