# The floor: the simplest loop a careful user would write to echo
# 4-byte-big-endian-length-prefixed frames on stdin/stdout, no codec: read
# the length and the payload from sys.stdin.buffer, write both back in one
# write and flush. An optional argument asks Linux for pipes of that many
# bytes (F_SETPIPE_SZ), as pypool does for its workers' pipes.
import sys

if len(sys.argv) > 1:
    import fcntl

    for fd in (0, 1):
        fcntl.fcntl(fd, 1031, int(sys.argv[1]))  # F_SETPIPE_SZ

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
while header := stdin.read(4):
    body = stdin.read(int.from_bytes(header, "big"))
    stdout.write(header + body)
    stdout.flush()
