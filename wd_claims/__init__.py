"""The engine shared by the claims: theory (sympy), data, training, probes, reports, pytest plugin."""
