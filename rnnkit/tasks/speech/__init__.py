"""The speech task."""
