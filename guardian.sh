# The pool's guardian (guardian.go). Go runs it as
#   /bin/sh -c SCRIPT pypool-guardian
# (SCRIPT: this file without its comment lines), with an environment of its
# own (PATH=/bin:/usr/bin, LC_ALL=C: nothing of the host's, so no ENV,
# BASH_ENV or exported function reaches it), in / and in a process group of
# its own, without a parent-death signal. Its stdin is a pipe whose write end
# only the Go process holds (close-on-exec). Go writes one line per process
# group: +PGID when a worker (or the fork server's template) started, -PGID
# once it exited and its group was killed. At the end of stdin (the Go
# process died, or Close is done with the workers) it sends SIGKILL to every
# group it still knows, then exits 0.
#
# It never waits for a worker: a worker stuck in C code is killed all the
# same. Only built-in commands (trap, exec, read, case, [, kill): it forks
# nothing, so it starts and runs on a fraction of a millisecond of CPU.
# POSIX sh only: dash (Debian's /bin/sh), bash as sh (macOS), busybox ash.

# A Ctrl-C is for the Go program to handle: the guardian ends at the end of
# its input (or by a signal that ends the Go program too).
trap '' INT

# Descriptors the Go process leaked to its children (opened without
# close-on-exec, by C code or a wrapper script) are not the guardian's: it
# closes 3 to 9, the numbers a POSIX shell can name (dash cannot close 10
# and above; see guardian.go).
exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-

# A group's variable g<PGID>: 1 while it is owned, 0 once released but still
# in list (the groups in the order they came, separated by spaces); list is
# rebuilt without the released ones once they outnumber the owned ones, so
# that a line costs the same however many groups came and went. eval sees
# only the digits checked below.
list='' owned=0 released=0
# read trims the spaces and tabs around a line; a CR before its end is cut.
# A last line without its newline counts too.
while read -r line || [ -n "$line" ]; do
	line=${line%[[:space:]]}
	case $line in
	+*) op=+ ;;
	-*) op=- ;;
	*) continue ;;
	esac
	pgid=${line#?}
	pgid=${pgid#"${pgid%%[!0]*}"} # no leading zeros: a decimal number, as Go writes it
	case $pgid in
	'' | 1 | *[!0-9]*) continue ;; # not a group, or 0 and 1: never the caller's own by accident
	esac
	eval "state=\${g$pgid-}"
	if [ "$op" = + ]; then
		case $state in
		'') list="$list $pgid" owned=$((owned + 1)) ;;
		0) owned=$((owned + 1)) released=$((released - 1)) ;;
		esac
		eval "g$pgid=1"
	elif [ "$state" = 1 ]; then
		eval "g$pgid=0"
		owned=$((owned - 1)) released=$((released + 1))
		if [ "$released" -gt 64 ] && [ "$released" -gt "$owned" ]; then
			kept=''
			for pgid in $list; do
				eval "state=\$g$pgid"
				if [ "$state" = 1 ]; then kept="$kept $pgid"; else unset "g$pgid"; fi
			done
			list=$kept released=0
		fi
	fi
done

# A group already gone (or not ours to kill) is skipped, silently.
for pgid in $list; do
	eval "state=\$g$pgid"
	[ "$state" = 1 ] && kill -s KILL -- "-$pgid" 2>/dev/null
done
exit 0
