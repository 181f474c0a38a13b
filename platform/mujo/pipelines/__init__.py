"""Ray edges that move data: generation (Ray tasks) and preprocessing (Ray Data)."""
