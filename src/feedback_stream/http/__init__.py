"""The processor's HTTP server: CloudEvents ingest, /metrics, JSON API and live page."""
