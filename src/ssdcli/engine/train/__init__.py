"""Training: the loop behind ``ssd train`` and what it is made of (schedule, time budget, EMA, signals, DDP)."""
