"""Honest evaluation of feature sets: grouped nested CV, survival models, paired statistics, robustness."""
