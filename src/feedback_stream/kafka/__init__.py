"""Kafka edges of the service: the consumer-group source, the dead-letter producer, and
the repartition step that keys Seldon's unkeyed records by puid."""
