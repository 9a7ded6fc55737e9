"""Foundations every other layer builds on: typed errors, unit conversions, the registry
mechanism, the Recording a target returns, and atomic file I/O. Imports nothing else of
spikeport."""
