"""Releasing a model and tracing its images, above the metrics (the release runs the memorisation audit):

- `build`: `ganforge release`, the release folder with its model card (`card`), its gate and its hashes;
- `verify`: `ganforge verify`, reading an image file's mark, fingerprint and signed metadata.

The marks themselves, identities and signatures sit low, in `ganforge.provenance`, where the generator
and the data reader can use them.
"""
