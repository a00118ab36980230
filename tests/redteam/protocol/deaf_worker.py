"""A hostile loss worker at the protocol level: it answers INIT, shrinks its input pipe and never
reads again (nor writes), so that a large enough write from the trainer cannot complete."""
import fcntl
import os
import struct
import sys
import time

HEADER = struct.Struct("<BI")
F_SETPIPE_SZ = 1031


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


kind, length = HEADER.unpack(read_exact(HEADER.size))
read_exact(length)
ready = b'{"capabilities": [], "num_params": 0}'
os.write(1, HEADER.pack(101, len(ready)) + ready)
try:
    fcntl.fcntl(0, F_SETPIPE_SZ, 4096)
except OSError:
    pass
while True:
    time.sleep(1)
