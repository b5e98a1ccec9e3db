"""Proving the attributions: the retraining game, and the scores and tables built on it (LDS,
noise ceilings, proxy fidelity, counterfactual removal, planted placements).

No imports here: importing a module of this folder runs this file first.
"""
