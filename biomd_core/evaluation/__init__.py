"""Quality metrics of generated trajectories against reference MD."""
