"""A small flower classifier trained with mini-batch SGD."""
