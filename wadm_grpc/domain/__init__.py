"""The domain: trades, timeframes, exact decimals and aggregates. Pure Python, stdlib only."""
