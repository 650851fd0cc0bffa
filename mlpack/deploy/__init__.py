"""Handing images to the engines clusters already have (Slurm, Kubernetes)."""
