"""Short experiment entry points (``python -m experiments.<name>``)."""
