"""Petastorm: train PyTorch and TensorFlow models straight from Apache Parquet datasets."""
__version__ = "1.0.0.dev0"
