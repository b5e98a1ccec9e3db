"""The proxy game: generation pools and their mixtures, the metrics that turn samples into
utilities, and the features they need (extractors, Inception, LPIPS, the user's functions).

No imports here: importing a module of this folder runs this file first.
"""
