"""Monte Carlo certification of smoothed classifiers (Cohen et al., 2019) with any certificate.
(To be built: issue "Torch backend".)"""
