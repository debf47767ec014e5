"""Access control for both faces: API keys and scopes, weighted rate limits, per-key stream caps."""
