"""Preprocessing: one shared code path for pretraining and feature extraction."""
