"""Training: the loop, losses, recipes (the run configuration) and classification scores."""
