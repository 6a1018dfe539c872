"""The metrics servicerouter exports: counters, gauges and histograms with labels.

A few dozen lines of our own rather than a client library.  Kept apart from the
``--status-listen`` endpoint (:mod:`servicerouter.serve.status`) that serves them:
the engine's core counts into them in every mode, a one-shot run too, which
serves nothing and should not load an HTTP server to count.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LabelKey = tuple[tuple[str, str], ...]


def _label_key(labels: Mapping[str, str] | None) -> LabelKey:
    return tuple(sorted((labels or {}).items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = list(key) + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class Counter(_Metric):
    """A counter, optionally labelled.

    ``series``: the label sets known in advance, exported at 0 from the start,
    so a series exists before its first increment (a ``rate()`` or an alert on
    ``{result="failed"}`` sees 0, not nothing, and an unlabelled 0 never turns
    into labelled series later).
    """

    kind = "counter"

    def __init__(self, name: str, help_text: str,
                 series: Iterable[Mapping[str, str]] = ()) -> None:
        super().__init__(name, help_text)
        self._values: dict[LabelKey, float] = {_label_key(dict(labels)): 0.0
                                               for labels in series}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _label_key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_label_key(labels), 0.0)

    def total(self) -> float:
        return sum(self._values.values())

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items()) or [((), 0.0)]
        return [f"{self.name}{_labels_text(k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_label_key(labels)] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str,
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        with self._lock:
            self._sum += value
            self._count += 1
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[index] += 1

    @property
    def count(self) -> int:
        return self._count

    def lines(self) -> list[str]:
        with self._lock:
            out = [f'{self.name}_bucket{{le="{_number(b)}"}} {c}'
                   for b, c in zip(self.buckets, self._counts, strict=True)]
            out.append(f'{self.name}_bucket{{le="+Inf"}} {self._count}')
            out.append(f"{self.name}_sum {_number(self._sum)}")
            out.append(f"{self.name}_count {self._count}")
        return out


def _each(label: str, *values: str) -> list[dict[str, str]]:
    return [{label: value} for value in values]


class Metrics:
    """Every metric servicerouter exports (one instance per router).

    Labelled counters whose label values are known start with every series at
    0; ``event_types`` are the event type labels to start with (the live
    engine passes the bounded set it counts).
    """

    def __init__(self, event_types: Iterable[str] = ()) -> None:
        self.syncs = Counter("servicerouter_syncs_total",
                             "Syncs by kind (full, incremental) and result (ok, error).",
                             [{"kind": kind, "result": result}
                              for kind in ("full", "incremental") for result in ("ok", "error")])
        self.sync_duration = Histogram("servicerouter_sync_duration_seconds",
                                       "Duration of a sync, from fetch to applied.")
        self.reloads = Counter("servicerouter_reloads_total",
                               "HAProxy reloads by result (ok, failed).",
                               _each("result", "ok", "failed"))
        self.runtime_updates = Counter(
            "servicerouter_runtime_updates_total",
            "Server changes applied through the Runtime API without a reload.")
        self.runtime_servers = Counter(
            "servicerouter_runtime_servers_total",
            "Servers changed through the Runtime API by action (add, remove, readdress, reweight).",
            _each("action", "add", "remove", "readdress", "reweight"))
        self.cert_updates = Counter(
            "servicerouter_cert_updates_total",
            "Certificates swapped through the Runtime API without a reload, by result "
            "(ok, failed: a reload applied it instead).", _each("result", "ok", "failed"))
        self.events = Counter("servicerouter_events_total", "Marathon events received by type.",
                              _each("type", *event_types))
        self.marathon_errors = Counter("servicerouter_marathon_errors_total",
                                       "Failed Marathon requests and event stream drops.")
        self.quarantined = Gauge("servicerouter_quarantined_apps",
                                 "Apps left out because HAProxy rejected their config.")
        self.route_conflicts = Gauge(
            "servicerouter_route_conflicts",
            "Losing claims on a vhost(+path) or bind port another (older) app owns.")
        self.event_to_apply = Histogram(
            "servicerouter_event_to_apply_seconds",
            "From the first event of a burst to its change being live in HAProxy.")
        self.validations = Counter("servicerouter_validations_total",
                                   "haproxy -c runs by result (ok, failed).",
                                   _each("result", "ok", "failed"))
        self.resync_drift = Counter(
            "servicerouter_resync_drift_total",
            "Full resyncs that found routing different from what events had built.")
        self.haproxy_restarts = Counter("servicerouter_haproxy_restarts_total",
                                        "Managed HAProxy restarted after it died.")
        self.marathon_up = Gauge("servicerouter_marathon_up",
                                 "1 when the last Marathon request succeeded.")
        self.services = Gauge("servicerouter_services", "Routed service ports.")
        self.last_sync = Gauge("servicerouter_last_sync_timestamp_seconds",
                               "Unix time of the last successful sync.")
        # Removal holds (servicerouter.engine.holds): the last config keeps serving.
        self.removal_held = Gauge("servicerouter_removal_held",
                                  "1 while a large removal is held, else 0.")
        self.removal_held_servers = Gauge("servicerouter_removal_held_servers",
                                          "Servers the held removal would take away.")
        self.build: dict[str, str] = {}
        self.set_build(None)

    def set_build(self, haproxy_version: str | None) -> None:
        """``servicerouter_build_info{version,python,haproxy} 1`` and /status's "build".

        Which servicerouter, Python and HAProxy run is the first question about any
        dashboard anomaly; a constant-1 gauge with labels is how Prometheus says it.
        """
        import platform

        from servicerouter import __version__

        self.build = {"version": __version__, "python": platform.python_version(),
                      "haproxy": haproxy_version or "unknown"}
        self.build_info = Gauge("servicerouter_build_info",
                                "Always 1: the running servicerouter, Python and HAProxy "
                                "versions are its labels.", [self.build])
        self.build_info.set(1, **self.build)

    def all(self) -> list[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.extend(metric.header())
            lines.extend(metric.lines())
        return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "Metrics"]
