#!/bin/sh
# The house style, checked mechanically over src/: lines within 80
# columns (tabs of 8), no trailing white space, no // comments, none of
# the classic footgun functions.  Prints each offence; exits 1 if any.

cd "$(dirname "$0")/.." || exit 2
awk '
{
	line = $0
	col = 0
	for (i = 1; i <= length(line); i++) {
		c = substr(line, i, 1)
		col = (c == "\t") ? col + 8 - col % 8 : col + 1
	}
	if (col > 80) { print FILENAME ":" FNR ": longer than 80 columns"; bad = 1 }
	if (line ~ /[ \t]$/) { print FILENAME ":" FNR ": trailing white space"; bad = 1 }
	if (line ~ /^[^"*]*\/\//) { print FILENAME ":" FNR ": // comment"; bad = 1 }
	if (line ~ /(^|[^_a-z])(sprintf|strcpy|strcat|gets|strtok|atoi)\(/) {
		print FILENAME ":" FNR ": banned function"; bad = 1
	}
}
END { exit bad }
' src/*.c src/*.h tests/unit/*.c tests/unit/*.h
