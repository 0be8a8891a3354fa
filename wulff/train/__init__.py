"""Noise-augmented training of base classifiers for randomized smoothing (Appendix D).
(To be built: issue "Torch backend".)"""
