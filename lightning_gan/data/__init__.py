"""Datamodules: toy2d (mixtures of Gaussians), shapes (procedural, the embedded default), image_folder."""
