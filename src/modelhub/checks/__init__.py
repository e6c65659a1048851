"""Checks of staged models against the model import frameworks they are staged for
(``modelhub check --importer NAME``): :mod:`.dl4j`."""
