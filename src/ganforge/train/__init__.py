"""Training: configuration, objectives (phases and losses), augmentation, the loop, checkpoints, export.

The trainer owns the loop (devices, precision, processes, EMA, ticks, checkpoints) and knows no model;
an objective says which phases a step has and what each phase's loss is.
"""
