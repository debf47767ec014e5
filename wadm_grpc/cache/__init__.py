"""Adapters of the Cache port: bounded in-process LRU, Redis, and Redis with a memory fallback."""
