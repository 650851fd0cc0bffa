"""Standard-library-only primitives shared by the ``mlpack`` package and the runtime's helper.

The helper process starts as ``python -I -S`` and imports this subpackage directly, so nothing
here may import outside the standard library or from the rest of ``mlpack``. A test guards it.
"""
