"""The level set method (Section 4.1, Appendix T): exact Neyman-Pearson radius tables for
distributions with spherical level sets (Theorem T.1, Algorithms 1 and 2).
(To be built: issue "Level set method".)"""
