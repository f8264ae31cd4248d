"""mlcourse.representations: fixed-length features of compositions and structures."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from mlcourse import representations


def test_disordered_structure_is_named_not_an_attribute_error():
    alloy = Structure(Lattice.cubic(3.6), ["Cu", {"Au": 0.5, "Cu": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ordered = Structure(Lattice.cubic(3.6), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"structure 1 .* disordered at site 1 .*OrderDisorderedStructure"):
        representations.sine_coulomb_eigenvalues([ordered, alloy])


def test_sine_coulomb_eigenvalues_do_not_depend_on_the_order_of_the_sites():
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    clna = Structure(Lattice.cubic(5.64), ["Cl", "Na"], [[0.5, 0.5, 0.5], [0, 0, 0]])
    ev = representations.sine_coulomb_eigenvalues([nacl, clna])
    assert np.allclose(ev[0], ev[1]) and ev[0, 0] > ev[0, 1] > 0
