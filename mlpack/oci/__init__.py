"""OCI images: digests, deterministic layers, the safe applier, the store and registries."""
