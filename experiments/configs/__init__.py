"""Experiment configurations (``get_config()`` -> ml_collections.ConfigDict), one per file."""
