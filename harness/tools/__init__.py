"""The operator's tools beside the evaluation: ``harness bench``, ``harness selftest``, ``harness image build``."""
