"""Lesson 01 family: classic regression on matbench (its metrics: :func:`mlcourse.metrics.regression_metrics`)."""

from __future__ import annotations

import numpy as np


def ridge_closed_form(X, y, alpha: float) -> tuple[np.ndarray, float]:
    """Teaching version of ``sklearn.linear_model.Ridge``: w = (XcᵀXc + αI)⁻¹ Xcᵀyc.

    Xc and yc are centred so that the intercept is not penalised, as in scikit-learn.
    Returns (coefficients, intercept).
    """
    X, y = np.asarray(X, float), np.asarray(y, float)
    x_mean, y_mean = X.mean(axis=0), y.mean()
    Xc, yc = X - x_mean, y - y_mean
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ yc)
    return w, float(y_mean - x_mean @ w)
