"""The differential method (Appendix G): the law of gamma_u = <u, grad psi(delta)>, Phi(p) and the
certified radius R(rho) = lam * integral_{1-rho}^{1/2} dp / Phi(p), derived automatically.
(To be built: issue "Differential method engine".)"""
