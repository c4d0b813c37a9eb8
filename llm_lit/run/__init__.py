"""A run's bookkeeping: checkpoint files (safe reads, checksums, atomic writes), run folders and their
locks, checkpoints on interrupts, and the weights a run starts from (`init_from`).

May import: everything below it (`training` and the layers under it). Never `commands`.
"""
