"""Core data transforms: skeleton, activity catalogue, motion synthesis, virtual IMU, video stand-in (no Ray)."""
