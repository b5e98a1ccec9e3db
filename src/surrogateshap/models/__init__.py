"""The generative models: the class-conditional UNet and the digits classifier, text-to-image
loading and sampling, tiny offline pipelines for tests, the small pipeline and LoRA the workflow
trains (t2i_training), and the generator interface the proxy game samples through.

No imports here: importing a module of this folder runs this file first.
"""
