"""Pretrained parts, read from the weights that pip packages ship (never from a hub)."""
