"""Handing images to the engines clusters already have (Kubernetes, Slurm)."""
