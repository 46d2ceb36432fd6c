"""Micro-profiling tools: one expert rule per module (installed as ``kernelpro.tools``)."""
