"""mlcourse: helper package of the machine-learning-for-materials course kit.

Modules: ``data`` (offline dataset registry and loaders), ``results`` (recorded metrics),
``runner`` (papermill execution with time and memory), ``check`` (exercise auto-checks),
``student`` (student copies), ``lesson`` (the scaffold every notebook starts with), ``plots``,
``metrics`` (every metric, no torch), ``training`` (the one training loop of the networks), and one
module per lesson family (``representations``, ``regression``, ``lattice``, ``potentials``,
``foundation``, ``gnn``, ``migration``, ``generative``).
"""

__version__ = "0.1.0"
