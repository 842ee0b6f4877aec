"""BigGAN for lightning-gan (Brock et al. 2019): registered as the ``biggan`` architecture through an entry point."""
