"""The window gauges written directly: the same page as prometheus_client's, in both formats.

Oracles: ``prometheus_client``'s own ``generate_latest`` (text format and
OpenMetrics) over the same families through
:class:`~feedback_stream.prometheus.WindowCollector`, read back with its
parsers (``text_string_to_metric_families``) sample by sample, and
``promtool check metrics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from feedback_stream.decode import DecodeError
from feedback_stream.engine import Engine
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    MetricsExposition,
    WindowGauges,
    escape_help,
    escape_label_value,
    format_value,
    label_set,
)
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.prometheus import LabelGuard, ServiceMetrics, WindowCollector
from tests._hostile import promtool_check

HOSTILE = ('q"uote', "back\\slash", "new\nline", "ünï €", "", 'x",model="y', "}{=,", "\\n")
"""Names that break a naive writer: quote, backslash, line feed, UTF-8, empty, injection."""

_names = st.one_of(
    st.sampled_from(HOSTILE),
    st.sampled_from(("default", "shadow", "iris", "a", "b")),
    st.text(st.characters(codec="utf-8"), max_size=6),
)
_OM_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class _Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class _Pages:
    """One engine, read by the former path and by the new one, each with its own guard.

    ``former``: every family in one registry, rendered by ``prometheus_client``.
    """

    def __init__(self, engine: Engine, clock: _Clock, max_models: int, max_classes: int) -> None:
        self.former = CollectorRegistry(auto_describe=False)
        former_guard = LabelGuard(max_models, max_classes, ())
        former_counters = ServiceMetrics(self.former, former_guard)
        former_counters.attach(engine)
        self.former.register(WindowCollector(engine, former_guard, clock))
        guard = LabelGuard(max_models, max_classes, ())
        self.counters = ServiceMetrics(CollectorRegistry(auto_describe=False), guard)
        self.counters.attach(engine)
        rest = CollectorRegistry(auto_describe=False)
        self.page = MetricsExposition(rest, WindowGauges(engine, guard, clock), self.counters)
        self.former_counters = former_counters

    def each_counters(self) -> tuple[ServiceMetrics, ServiceMetrics]:
        return self.former_counters, self.counters

    def text(self) -> tuple[str, str]:
        body, content_type = self.page.render("")
        assert content_type.startswith("text/plain; version=0.0.4")
        return generate_latest(self.former).decode(), body.decode()

    def openmetrics(self) -> tuple[str, str]:
        body, content_type = self.page.render(_OM_ACCEPT)
        assert content_type.startswith("application/openmetrics-text; version=1.0.0")
        former = om_exposition.generate_latest(self.former)  # type: ignore[no-untyped-call]
        return former.decode(), body.decode()


def _value(v: float) -> object:
    return "NaN" if math.isnan(v) else v


def _families(text: str, openmetrics: bool = False) -> dict[str, object]:
    parse = (
        om_parser.text_string_to_metric_families if openmetrics else text_string_to_metric_families
    )
    return {
        f.name: (
            f.type,
            f.documentation,
            sorted((s.name, tuple(sorted(s.labels.items())), _value(s.value)) for s in f.samples),
        )
        for f in parse(text)
    }


def assert_same_page(former: str, new: str, openmetrics: bool = False) -> None:
    """Sample by sample through the parser, then line by line (order aside)."""
    expected = _families(former, openmetrics)
    got = _families(new, openmetrics)
    assert got.keys() == expected.keys()
    for name, family in expected.items():
        assert got[name] == family, name
    assert sorted(new.splitlines()) == sorted(former.splitlines())


_event_ids = iter(range(10**9))


def _response(puid: str, key: ModelKey, at: float, label: str, top: float | None) -> Event:
    identity = ("r", str(next(_event_ids)))
    if top is None:
        return Event(EventKind.RESPONSE, puid, key, at, identity, classes=(label,))
    names = (label, f"{label}-other")
    return Event(
        EventKind.RESPONSE,
        puid,
        key,
        at,
        identity,
        classes=(label,),
        names=names,
        values=[[top, 1.0 - top]],
    )


def _feedback(
    puid: str, key: ModelKey, at: float, truth: str | None, reward: float | None
) -> Event:
    identity = ("f", str(next(_event_ids)))
    classes = (truth,) if truth is not None else None
    # An empty predictor and model: every response of the puid (so comparisons form).
    target = ModelKey(key.namespace, key.deployment, "", "")
    return Event(EventKind.FEEDBACK, puid, target, at, identity, classes=classes, reward=reward)


_step = st.tuples(
    st.integers(0, 11),  # puid
    st.integers(0, 3),  # model
    st.integers(0, 3),  # class
    st.one_of(st.none(), st.floats(0.5, 1.0)),  # top score of a probability row
    st.booleans(),  # a feedback follows
    st.one_of(st.none(), st.floats(-2.0, 5.0, allow_nan=False)),  # reward
    st.floats(0.0, 40.0),  # seconds after the previous event
    st.booleans(),  # the model's shadow answers too (a paired comparison)
)

_Step = tuple[int, int, int, float | None, bool, float | None, float, bool]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    models=st.lists(st.tuples(_names, _names, _names, _names), min_size=1, max_size=4, unique=True),
    classes=st.lists(_names, min_size=1, max_size=4, unique=True),
    rounds=st.lists(st.lists(_step, max_size=25), min_size=1, max_size=4),
    caps=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    slide=st.floats(0.0, 90.0),
    openmetrics=st.booleans(),
)
def test_the_page_equals_prometheus_client_on_random_windows(
    models: list[tuple[str, str, str, str]],
    classes: list[str],
    rounds: list[list[_Step]],
    caps: tuple[int, int],
    slide: float,
    openmetrics: bool,
) -> None:
    keys = [ModelKey(*names) for names in models]
    declared = [{"deployment": keys[0].deployment, "kind": "classification"}]
    if keys[-1].deployment != keys[0].deployment:
        declared.append({"deployment": keys[-1].deployment, "kind": "binary"})
    kinds = ModelKinds.parse({"model": declared})
    engine = Engine(("total", "60s", "5"), ttl=45.0, kinds=kinds)
    clock = _Clock(1000.0)
    pages = _Pages(engine, clock, *caps)
    at = 1000.0
    for steps in rounds:
        for puid, model, label, top, answered, reward, gap, paired in steps:
            at += gap
            key = keys[model % len(keys)]
            truth = classes[label % len(classes)]
            predicted = classes[(label + puid) % len(classes)]
            engine.process_event(_response(f"p{puid}", key, at, predicted, top))
            if paired:
                shadow = ModelKey(key.namespace, key.deployment, key.predictor + "-shadow", "s")
                engine.process_event(_response(f"p{puid}", shadow, at, truth, top))
            if answered:
                engine.process_event(_feedback(f"p{puid}", key, at + 0.5, truth, reward))
        clock.now = max(clock.now, at) + slide
        former, new = pages.openmetrics() if openmetrics else pages.text()
        assert_same_page(former, new, openmetrics)
        engine.expire(at)  # entries leave the join stores: the pending rows change
        former, new = pages.openmetrics() if openmetrics else pages.text()
        assert_same_page(former, new, openmetrics)


def test_an_unchanged_window_is_written_from_its_lines_and_a_changed_one_again() -> None:
    key = ModelKey("ns", 'de"p', "default", "m\n1")
    engine = Engine(("total", "60s"))
    clock = _Clock(100.0)
    pages = _Pages(engine, clock, 10, 10)
    for i in range(5):
        engine.process_event(_response(f"p{i}", key, 100.0 + i, "a", None))
        engine.process_event(_feedback(f"p{i}", key, 100.5 + i, "a" if i % 2 else "b", None))
    first = pages.text()
    assert_same_page(*first)
    assert pages.text() == first  # nothing moved: the same page
    clock.now = 200.0  # the 60 s window empties, the total does not
    former, new = pages.text()
    assert_same_page(former, new)
    assert new != first[1]
    assert 'feedback_stream_window_outcomes{deployment="de\\"p",model="m\\n1",' in new


def test_hostile_names_pass_promtool_and_read_back_as_sent() -> None:
    engine = Engine(("total", "60s", "3"))
    clock = _Clock(50.0)
    pages = _Pages(engine, clock, 100, 100)
    for i, name in enumerate(HOSTILE):
        key = ModelKey(name, f"dep{name}", "default", name + "m")
        engine.process_event(_response(f"p{i}", key, 10.0 + i, name, 0.75))
        engine.process_event(_feedback(f"p{i}", key, 10.5 + i, name, 1.0))
    for metrics in pages.each_counters():
        metrics.on_invalid(DecodeError('bad "json"\n', "bad_json", event_type=None))
        metrics.on_expired({EventKind.REQUEST: 3})
        metrics.on_dead_letter("bad\\reason")
        metrics.adopt(next(iter(engine.states.values())), sign=-1)
    former, new = pages.text()
    assert_same_page(former, new)
    result = promtool_check(new)
    assert result.returncode == 0, result.stdout + result.stderr
    families = {f.name: f for f in text_string_to_metric_families(new)}
    models = {s.labels["model"] for s in families["feedback_stream_window_outcomes"].samples}
    assert models == {name + "m" for name in HOSTILE}
    support = families["feedback_stream_class_support"].samples
    assert {s.labels["class"] for s in support} == set(HOSTILE)
    former_om, new_om = pages.openmetrics()
    assert_same_page(former_om, new_om, openmetrics=True)
    assert new_om.endswith("# EOF\n")
    assert new_om.count("# EOF") == 1


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain",
        "text/plain; version=1.0.0; escaping=allow-utf-8",
        "text/plain; version=1.0.0; escaping=dots",
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; escaping=values",
        "application/openmetrics-text; version=1.0.0; escaping=dots",
        "application/json, */*",
    ],
)
def test_every_negotiated_format_is_prometheus_clients(accept: str) -> None:
    engine = Engine(("total", "1m"))
    clock = _Clock(30.0)
    pages = _Pages(engine, clock, 5, 5)
    key = ModelKey("ns", "dep", "default", "m")
    for i in range(4):
        engine.process_event(_response(f"p{i}", key, 1.0 + i, "a", 0.9))
        engine.process_event(_feedback(f"p{i}", key, 1.5 + i, "ab"[i % 2], None))
    body, content_type = pages.page.render(accept)
    encoder, expected_type = choose_encoder(accept)
    assert content_type == expected_type
    expected = encoder(pages.former).decode()
    assert sorted(body.decode().splitlines()) == sorted(expected.splitlines())
    if content_type.startswith("application/openmetrics-text"):
        assert OPENMETRICS_CONTENT_TYPE.split(";")[0] in content_type
        assert body.endswith(b"# EOF\n")


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**20), 10**20))
def test_values_are_written_as_go_floats(value: float) -> None:
    assert format_value(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


@given(st.text(st.characters(codec="utf-8")))
def test_label_values_read_back_through_the_parser(value: str) -> None:
    line = f"m{{{label_set(('b', 'a'), (value, 'x'))}}} 1.0\n"
    (family,) = text_string_to_metric_families(line)
    (sample,) = family.samples
    assert sample.labels == {"a": "x", "b": value}
    assert line.startswith('m{a="x",b="')  # sorted by label name, as prometheus_client
    assert "\n" not in escape_label_value(value)


def test_help_text_escapes_as_each_format_requires() -> None:
    doc = 'a \\ b\nc "d"'
    assert escape_help(doc, openmetrics=False) == 'a \\\\ b\\nc "d"'
    assert escape_help(doc, openmetrics=True) == 'a \\\\ b\\nc \\"d\\"'
