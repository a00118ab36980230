"""A hostile loss worker at the protocol level (it stands in for worker.py, as code that reached
`os` could): it answers INIT, shrinks its input pipe to one page, stops reading, and sends valid
RESULT frames before it is asked, so that the trainer never waits on a read and its writes fill the
pipe. Standard library only; runs inside the sandbox like the real worker."""
import fcntl
import os
import struct
import sys
import time

HEADER = struct.Struct("<BI")
READY, RESULT = 101, 102
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
os.write(OUT, HEADER.pack(READY, len(ready)) + ready)
try:
    fcntl.fcntl(IN, F_SETPIPE_SZ, 4096)
except OSError:
    pass
result = struct.pack("<dddddI", 1.0, 1.0, 1.0, 1.0, 1.0, 0b1111)
frame = HEADER.pack(RESULT, len(result)) + result
os.set_blocking(OUT, False)
for _ in range(10_000):  # as many replies ahead as the pipe takes
    try:
        os.write(OUT, frame)
    except BlockingIOError:
        break
    except OSError:
        sys.exit(0)
while True:
    time.sleep(1)  # never read again
