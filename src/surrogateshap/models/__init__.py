"""The generative models: the class-conditional UNet and the digits classifier, text-to-image
loading and sampling, tiny offline pipelines for tests, and the generator interface the proxy
game samples through.

No imports here: importing a module of this folder runs this file first.
"""
