"""Benchmarks: speed and intelligibility of the default voice."""
