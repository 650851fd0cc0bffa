"""Builders: an ImageSpec to an image (embedded: no daemon; docker: through the docker SDK)."""
