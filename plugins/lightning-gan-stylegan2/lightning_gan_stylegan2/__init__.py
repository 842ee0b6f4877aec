"""StyleGAN2 for lightning-gan: mapping network, modulated convolutions, noise inputs, FIR resampling,
skip/residual networks (architecture ``stylegan2``) and path-length regularization (``path_length``).

Registered through entry points; lightning-gan never imports this package itself.
"""
