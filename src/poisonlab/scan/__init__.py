"""Scanning a model you did not train: trigger search for text, Neural Cleanse and the maximum-margin
test (MM-BD) for images."""
