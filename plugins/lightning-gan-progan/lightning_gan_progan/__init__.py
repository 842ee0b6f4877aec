"""ProGAN architecture for lightning-gan (Karras et al. 2018), registered through an entry point."""
