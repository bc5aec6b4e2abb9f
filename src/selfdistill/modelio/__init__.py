"""Model files: safetensors weights + JSON metadata; loading never unpickles.

- :mod:`~selfdistill.modelio.jsonio`: checked JSON in and out (no pickle, plain file
  names, format versions);
- :mod:`~selfdistill.modelio.weights`: one network (a *member*) as
  ``<stem>.safetensors`` + ``<stem>.json``;
- :mod:`~selfdistill.modelio.bundle`: a model directory, the members of one lineage
  plus what prediction needs (classes, features, scaler, temperature).

Importing this package does not import torch; only the functions that build
``nn.Module`` objects do.
"""
