"""The trust boundary: everything between the trainer and a submission's code.

A submission is never imported in the training process. This package is what a security reviewer
reads:

- :mod:`~harness.isolation.rules`: the static rules (AST, on the host, nothing imported);
- :mod:`~harness.isolation.check`: the static check of a file and the interface check (probe calls
  through a sandboxed worker);
- :mod:`~harness.isolation.worker`: the script that runs inside the sandbox (it imports the
  submission and nothing of the harness; the trainer never imports it);
- :mod:`~harness.isolation.wire`: the binary wire format, staged beside the worker and imported by
  both sides;
- :mod:`~harness.isolation.client`: the trainer's side of the wire (spawn, frames with deadlines);
- :mod:`~harness.isolation.messages`: the requests and the validated replies;
- :mod:`~harness.isolation.sandbox`: the backends (Docker, bubblewrap, none) and their limits.
"""
