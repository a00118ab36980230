"""The served board (``harness serve``): participants submit over HTTP, a queue kept in an SQLite
database runs their evaluations, and everyone reads one live board.

The server is the same pipeline as the command line, behind a web server. It never imports a
submission: intake runs the CLI's own checks on the uploaded bytes (name rule, size limit, static
check, nothing imported), and each evaluation is a ``harness evaluate FILE --json`` child process,
which brings the CLI's sandbox, checkpoints, resume and skip rule with it. Everything the server
uses of the rest of the harness goes through :mod:`harness.serve.pipeline`.

Modules: :mod:`~harness.serve.settings` (the options), :mod:`~harness.serve.db` (participants,
entry names, submissions, the queue), :mod:`~harness.serve.tokens` (tokens, hashed),
:mod:`~harness.serve.intake` (accepting an upload), :mod:`~harness.serve.runner` (the scheduler and
its child processes), :mod:`~harness.serve.board` (the rendered board, cached),
:mod:`~harness.serve.app` (the HTTP routes), :mod:`~harness.serve.guards` (headers, body size,
request rate), :mod:`~harness.serve.page` (the page), :mod:`~harness.serve.client` (``harness
submit``), :mod:`~harness.serve.commands` and :mod:`~harness.serve.options` (the subcommands).
The web stack is the optional extra ``pip install 'harness[serve]'`` (Starlette and uvicorn).
"""
