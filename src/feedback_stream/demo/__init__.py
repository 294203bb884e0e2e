"""``feedback-stream demo``: Seldon's iris default-vs-shadow example as live traffic.

:mod:`feedback_stream.demo.traffic` decides what to send and when; the
senders (HTTP POST or Kafka produce) only follow its schedule.
"""
