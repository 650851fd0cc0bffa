"""The container helper: namespaces, rootfs, privileges and execve, from an OCI config.

``python -I -S helper/__main__.py CTL_FD STATUS_FD [KEEP_FD ...]``, spawned by the embedded
runtime (``spawn.py``). It is a separate, single-threaded interpreter because
``unshare(CLONE_NEWUSER)`` is refused in a threaded process (SECURITY-AND-ISOLATION.md §1); it
imports the standard library and ``mlpack.oslib`` only (a test checks), nothing else of mlpack.

* ``supervisor``: S. Joins or creates the user and pid namespaces (the parent writes the id
  maps), forks C, relays signals, reports the exit status. S never enters the container's mount
  namespace.
* ``pid1``: C, pid 1. Joins the cgroups and the other namespaces, has ``rootfs`` built, runs the
  hooks, then ``process`` drops privileges, loads seccomp last and execs.
* ``channel``: the JSON-lines protocol with the parent (CTL_FD in, STATUS_FD out).
"""
