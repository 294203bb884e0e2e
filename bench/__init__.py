"""Benchmarks of feedback-stream against the baselines it must beat, in one run.

``python -m bench`` (``make bench``) and ``python -m bench --quick``
(``make bench-quick``) run every module below and write
``bench/results/latest.md``, ``latest.json`` and a profile of the hot path.
Every figure is an absolute number and a ratio against a baseline measured
in the same run, on the same machine, on the same generated stream: numbers
from another run or another machine are never compared.

One module per benchmark: :mod:`bench.core` (decode + join + windows, one
core), :mod:`bench.kafka_e2e` (raw aiokafka, ours, Quix Streams, Faust on a
preloaded topic), :mod:`bench.latency` (feedback produced → its effect in
``/metrics``), :mod:`bench.memory` (bytes per pending puid),
:mod:`bench.render` (``/metrics`` render time) and :mod:`bench.scaling` (two
processes on two partitions vs one).
"""
