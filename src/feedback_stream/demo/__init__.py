"""``feedback-stream demo``: the seed's iris comparison as live traffic.

:mod:`feedback_stream.demo.traffic` decides what to send and when; the
senders (HTTP POST or Kafka produce) only follow its schedule.
"""
