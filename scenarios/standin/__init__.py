"""Synthetic stand-in reference samples (behavioural models, not human data) for scenarios."""
