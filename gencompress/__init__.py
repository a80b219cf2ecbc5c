"""gencompress: take trained image generators to real-time deployment.

The core (this package) holds what every stage shares: the bundle, model loading,
the model zoo, data, quality metrics and errors. Stages live in gencompress.train,
gencompress.compress, gencompress.export and gencompress.benchmarks.
"""
__version__ = "0.1.0"
