"""Scanning a model you did not train: trigger search for text, Neural Cleanse for images."""
