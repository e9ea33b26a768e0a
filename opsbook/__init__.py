"""An end-to-end, literate MLOps system for image classification: data, training, bundle, serving, monitoring"""

__version__ = "0.1.0"
