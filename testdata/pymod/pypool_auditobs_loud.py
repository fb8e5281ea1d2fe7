"""A module that prints a line of 100,000 bytes at import, then 2,000
short lines (more than a pipe holds), then "loud import done": the
observability audit's (audit_obs_test.go) import output, in the fork
server's template as in a worker."""

import sys

sys.stdout.write("W" * 100000 + "\n")
for i in range(2000):
    sys.stdout.write("loud import line %d of many, to fill the pipe\n" % i)
sys.stdout.write("loud import done\n")
sys.stdout.flush()


def echo(value):
    return value
