"""From a utility table to attributions: coalition samplers, the estimators (exact, kernel,
permutation, Banzhaf, ...), the surrogate, convergence, payouts, and synthetic games with known
values for tests and benchmarks.

No imports here: importing a module of this folder runs this file first.
"""
