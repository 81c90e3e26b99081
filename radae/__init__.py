"""radae: radiomics with autoencoders, done honestly."""
__version__ = "0.1.0"
