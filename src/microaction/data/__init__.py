"""Dataset readers, the feature store, loaders and the synthetic generator."""
