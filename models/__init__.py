"""Everything the network sees or is: features, targets, windows, the LSTM, training, estimators.

Submodules import torch only where they need it; import them directly (``models.estimators``).
"""
