"""The engine shared by the claims: theory (sympy), data, training, probes, reports, the pytest
plugin."""
