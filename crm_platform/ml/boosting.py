"""scikit-learn's histogram gradient boosting, predicting on binned input.

A fitted ``HistGradientBoosting*`` model predicts new rows by walking every tree with the raw
float values. Each split's threshold is one of the model's own bin edges (a row goes left when
``x <= edge``), so mapping the rows to their bins once (``_BinMapper.transform``: bin ``k`` holds
the values ``edges[k-1] < x <= edges[k]``, missing values their own bin) and walking the trees on
the one-byte bin codes reaches the same leaves. scikit-learn itself walks binned rows this way
for its early-stopping scores during ``fit``. On the 1M-customer world it is about three times
faster: the CLV regressor (273 trees) on 797,000 customers 15.0 -> 5.3 s, identical predictions.

The classes only change how ``predict`` / ``predict_proba`` reach the leaves; fitting, parameters
and pickles are scikit-learn's. Models with native categorical features (this platform one-hot
encodes its categoricals) keep the raw walk.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads


class _BinnedPredict:
    def _raw_predict(self, X, n_threads=None):
        categorical = getattr(self, "is_categorical_", None)
        if getattr(self, "_in_fit", False) or (categorical is not None and np.any(categorical)):
            return super()._raw_predict(X, n_threads)
        X = self._preprocess_X(X, reset=False)     # validation and feature names, as scikit-learn does
        binned = self._bin_mapper.transform(X)      # Fortran order: the trees read a column at a time
        n_threads = _openmp_effective_n_threads(n_threads)
        raw = np.zeros((X.shape[0], self.n_trees_per_iteration_), dtype=self._baseline_prediction.dtype, order="F")
        raw += self._baseline_prediction
        missing = self._bin_mapper.missing_values_bin_idx_
        for trees in self._predictors:
            for k, tree in enumerate(trees):
                raw[:, k] += tree.predict_binned(binned, missing_values_bin_idx=missing, n_threads=n_threads)
        return raw


class BoostedClassifier(_BinnedPredict, HistGradientBoostingClassifier):
    """``HistGradientBoostingClassifier`` predicting on binned rows (same probabilities)."""


class BoostedRegressor(_BinnedPredict, HistGradientBoostingRegressor):
    """``HistGradientBoostingRegressor`` predicting on binned rows (same predictions)."""
