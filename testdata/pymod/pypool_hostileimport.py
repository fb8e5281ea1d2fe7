"""A module whose import raises an exception whose __str__ raises SystemExit
(audit_pyhostile_test.go)."""


class StrExits(Exception):
    def __str__(self):
        raise SystemExit(5)


raise StrExits()
