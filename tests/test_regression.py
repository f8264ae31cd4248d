import numpy as np
import pytest
from sklearn.linear_model import Ridge

from mlcourse.regression import ridge_closed_form


@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_teaching_ridge_agrees_with_scikit_learn(alpha):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 3
    y = X @ [1.0, -2.0, 0.5, 0.0, 3.0] + 7 + rng.normal(scale=0.1, size=60)
    w, b = ridge_closed_form(X, y, alpha)
    ref = Ridge(alpha=alpha).fit(X, y)
    assert np.allclose(w, ref.coef_, rtol=1e-8, atol=1e-10) and b == pytest.approx(ref.intercept_)
