"""The memorisation audit's thresholds, shared by the audit (`audit.py`) and its report (`audit_report.py`)."""

COPYING_Z = -3.0  # C_T below this: copying. One-sided, P(Z < -3) = 0.13% under no copying.
UNDERFITTING_Z = 3.0  # C_T above this: generated images sit farther from the data than real ones do.
NEAR_PERCENTILE = 1.0  # a near-duplicate is closer to a training image than 99% of held-out real images
NEAR_SHARE = 0.05  # ... and 5% of them (five times what fresh images show) counts as copying
MIN_CELL_GENERATED = 20  # Meehan et al.'s code keeps cells with more than tau = 20 / m of the generated
PAIR_ROWS = ("features: generated", "features: nearest training", "pixels: generated", "pixels: nearest training")
