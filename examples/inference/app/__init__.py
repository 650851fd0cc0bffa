"""Flower classifier inference service."""
