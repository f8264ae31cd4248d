"""mlcourse.representations: fixed-length features of compositions and structures."""

import pytest
from pymatgen.core import Lattice, Structure

from mlcourse import representations


def test_disordered_structure_is_named_not_an_attribute_error():
    alloy = Structure(Lattice.cubic(3.6), ["Cu", {"Au": 0.5, "Cu": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ordered = Structure(Lattice.cubic(3.6), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"structure 1 .* disordered at site 1 .*OrderDisorderedStructure"):
        representations.sine_coulomb_eigenvalues([ordered, alloy])
