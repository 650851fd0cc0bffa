"""Rendering and submitting mlpack images to cluster schedulers (Slurm; Kubernetes to come)."""
