"""Classic (non-neural) regime models as plain NumPy: a causal Gaussian HMM and logistic regression.

- :mod:`~selfdistill.nn.classic.hmm`: :class:`HMMParams`, the forward filter (bar t reads
  bars <= t only) and class probabilities;
- :mod:`~selfdistill.nn.classic.logistic`: :class:`LogisticParams` and its softmax;
- :mod:`~selfdistill.nn.classic.checks`: the input checks both share;
- :mod:`~selfdistill.nn.classic.modules`: the two as ``nn.Module`` s (the only torch here),
  so evaluation, model files and ``selfdistill predict`` treat them like any network.

These modules hold model definitions and inference only; fitting (EM on hmmlearn, the
scikit-learn grid) lives in :mod:`selfdistill.methods.hmm` and
:mod:`selfdistill.methods.logistic`. Importing ``hmm``, ``logistic`` or ``checks`` does not
import torch.
"""
