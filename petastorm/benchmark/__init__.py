"""Benchmarks of petastorm readers (``petastorm-throughput`` console script)."""
