"""Running images: the Runtime protocol, the embedded runtime and the Docker backend."""
