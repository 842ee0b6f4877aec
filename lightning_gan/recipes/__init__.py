"""Recipes shipped with lightning-gan: ``<name>.yaml`` files registered in ``lightning_gan.recipes``."""
