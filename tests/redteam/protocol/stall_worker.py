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
os.write(1, HEADER.pack(READY, len(ready)) + ready)
try:
    fcntl.fcntl(0, F_SETPIPE_SZ, 4096)
except OSError:
    pass
result = struct.pack("<dddddI", 1.0, 1.0, 1.0, 1.0, 1.0, 0b1111)
frame = HEADER.pack(RESULT, len(result)) + result
os.set_blocking(1, False)
for _ in range(10_000):  # as many replies ahead as the pipe takes
    try:
        os.write(1, frame)
    except BlockingIOError:
        break
    except OSError:
        sys.exit(0)
while True:
    time.sleep(1)  # never read again
