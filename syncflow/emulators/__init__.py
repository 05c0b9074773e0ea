"""Fake source and target systems (aiohttp servers) for tests, the demo and benchmarks."""
