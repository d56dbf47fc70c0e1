"""Data: turning messy sources into one prepared format, and reading it back fast.

- `sources`: enumerate files in a folder tree or an archive, accounting for each one.
- `decode`: one file's bytes to a fixed-size uint8 image, or a reason it was skipped.
- `prepare`: the parallel, resumable preparation that writes the prepared format.
- `format`: the prepared format itself (`PreparedDataset`).
- `reader`: random batches as tensors for the trainer.
- `fetch`: datasets by name (MNIST, Fashion-MNIST, CIFAR-10), with checksums and mirrors.
- `synthetic`: 2-D Gaussian mixtures as point datasets.
- `builtin`: the digits dataset that ships with scikit-learn, used by the demo.
"""
