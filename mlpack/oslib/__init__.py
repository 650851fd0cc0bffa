"""Standard-library-only primitives shared by the ``mlpack`` package and the runtime's helper.

The helper process starts as ``python -I -S`` and imports this subpackage directly, so nothing
here may import outside the standard library or from the rest of ``mlpack``. A test guards it.

* ``fs``: ``atomic_write`` and ``remove_tree`` (iterative, any depth, never follows symlinks);
* ``inroot``: the in-root path resolver and its one symlink rule (runc's and Docker's);
* ``jsoncodec``: the JSON codec on ``json``'s C accelerator;
* ``lines``: the newline framing of the runtime's messages to and from its helper;
* ``linux``: Linux constants and the system calls Python has no wrapper for (``clib``: the few
  ctypes pieces they need, made from ``_ctypes``).
"""
