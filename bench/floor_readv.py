# The floor: echo 4-byte-length-prefixed frames on stdin/stdout, no codec.
# An optional argument asks Linux for pipes of that many bytes
# (F_SETPIPE_SZ), as pypool does for its workers' pipes.
import os
import struct
import sys

inp, out = 0, 1
hdr = struct.Struct(">I")

if len(sys.argv) > 1:
    import fcntl

    for fd in (inp, out):
        fcntl.fcntl(fd, 1031, int(sys.argv[1]))  # F_SETPIPE_SZ


def read_exactly(n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(inp, [view[got:]])
        if k == 0:
            raise SystemExit(0)
        got += k
    return buf


while True:
    (size,) = hdr.unpack(read_exactly(4))
    body = read_exactly(size)
    os.write(out, hdr.pack(size) + body) if size < 65536 else os.writev(out, [hdr.pack(size), body])
