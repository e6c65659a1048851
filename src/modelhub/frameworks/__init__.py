"""Framework knowledge that hub adapters and conversions share: the frameworks' own caches,
registries and imports (torch's cache and torchvision's weights, Keras Applications and Keras
files, TensorFlow's logging). Below both :mod:`modelhub.hubs` and :mod:`modelhub.staging`, so
neither reaches into the other.
"""
