"""Benchmark scripts; a package so the scripts and the tests share bench.figures and bench.baselines."""
