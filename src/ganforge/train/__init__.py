"""Training: configuration, recipes (networks, phases and losses per model family), augmentation, the loop, checkpoints, export.

The trainer owns the loop (devices, precision, processes, EMA, ticks, checkpoints) and knows no model;
a recipe says which networks a family has, which phases a step has and what each loss is.
"""
