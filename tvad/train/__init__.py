"""Training: the frozen backbone's feature cache, stage 1 (the AHD), the tiny backbone's pretraining."""
