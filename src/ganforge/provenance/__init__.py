"""Provenance: where an image ganforge made came from. The low layer the generator and the data reader use.

- `mark`: the invisible mark (model id + seed) hidden in every generated image's pixels;
- `fingerprint`: the keyed texture `fingerprint=on` adds to the real images, so the weights make it too;
- `sign`: model identities (an id and an Ed25519 key pair per run), the signed PNG metadata that proves an
  image came from a model, and the local register models are looked up in;
- `stamp`: what the generator and the translator call to mark and sign the images they make.

Releasing a model and `ganforge verify` live above the metrics, in `ganforge.release`.
"""
