"""Colour constants shared across layers (data, models, provenance), so each reads the same numbers."""

# ITU-R BT.601 luma weights for R, G, B: what Pillow's "L" mode, `--derive gray` and pix2pix's keep_luma use.
BT601 = (0.299, 0.587, 0.114)
