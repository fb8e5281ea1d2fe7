# The floor: echo 4-byte-length-prefixed frames on stdin/stdout, no codec.
import os
import struct

inp, out = 0, 1
hdr = struct.Struct(">I")


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
