"""Entry script of the helper interpreter (``python -I -S`` runs it by path).

``-I`` puts neither the script's directory nor the environment on ``sys.path``: the directory
holding the ``mlpack`` package is appended here, after the standard library, so that the helper
imports ``mlpack.oslib`` from the same installation as the runtime that spawned it.
"""

import os
import sys

sys.path.append(
    os.path.dirname(
        os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        )
    )
)

from mlpack.runtime.embedded.helper.supervisor import main

# Everything is written with os.write: skip the interpreter's teardown (a few ms on every
# container exit); an exception still unwinds and prints through the normal path.
os._exit(main())
