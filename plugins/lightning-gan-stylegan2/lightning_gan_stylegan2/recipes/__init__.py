"""Recipes of the StyleGAN2 plugin (found through the lightning_gan.recipes entry points)."""
