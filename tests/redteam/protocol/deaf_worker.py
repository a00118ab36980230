"""A hostile loss worker at the protocol level: it answers INIT, shrinks its input pipe and never
reads again (nor writes), so that a large enough write from the trainer cannot complete."""
import fcntl
import os
import struct
import sys
import time

HEADER = struct.Struct("<BI")
F_SETPIPE_SZ = 1031


def protocol_fds():
    """fds 0/1, or the connection to ``--connect PATH`` (the Docker backend's transport), with the
    receive buffer shrunk either way so that the trainer's writes fill it quickly."""
    argv = sys.argv[1:]
    if "--connect" in argv:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(argv[argv.index("--connect") + 1])
        if "--token-file" in argv:  # the run's secret, which the real worker sends first
            with open(argv[argv.index("--token-file") + 1], "rb") as f:
                sock.sendall(f.read())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        fd = sock.detach()
        return fd, fd
    return 0, 1


IN, OUT = protocol_fds()


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(IN, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


kind, length = HEADER.unpack(read_exact(HEADER.size))
read_exact(length)
ready = b'{"capabilities": [], "num_params": 0}'
os.write(OUT, HEADER.pack(101, len(ready)) + ready)
try:
    fcntl.fcntl(IN, F_SETPIPE_SZ, 4096)
except OSError:
    pass
while True:
    time.sleep(1)
