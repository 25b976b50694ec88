"""Suites, cells, executors and the run store."""
