"""DCGAN and MLP architectures for lightning-gan, registered through entry points."""
