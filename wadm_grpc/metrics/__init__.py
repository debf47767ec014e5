"""Prometheus metrics: definitions, the scrape, multiprocess mode, and adapters that count into them."""
