"""The classic algorithms: segmentation without a neural network, on the CPU.

- :mod:`.regions`: automatic segmentation (every distinct region).
- :mod:`.indices`: spectral and colour indices and class memberships.
- :mod:`.vocabulary`: the words text prompts may use and what each finds.
- :mod:`.interactive`: box and point prompts.
"""
