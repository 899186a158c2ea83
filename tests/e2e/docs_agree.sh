# The manual, the usage text, README.md and the sources tell the same
# story: one synopsis, the same options, the same keywords (with their
# ranges and defaults) and the same exit statuses.  The manual renders
# without a warning.

MAN=$TOP/bastion-stdio.1

# One mdoc section of the manual's source, .Sh line excluded.
man_section() {
	awk -v s="$1" '/^\.Sh /{ on = ($0 == ".Sh " s); next } on' "$MAN"
}

# The text of one keyword's entry under CONFIGURATION, macros stripped
# and lines joined, so that phrases can be looked for.
man_keyword_text() {
	man_section CONFIGURATION | awk -v k="$1" '
	    /^\.It Cm / { on = ($3 == k); next }
	    on' | sed '/^\.Bl /d; s/^\.[A-Z][a-z]* //' | tr '\n' ' '
}

# The rows of one README.md table, found by the heading above it.
readme_table() {
	awk -v h="$1" '/^#+ /{ on = ($0 == h); next } on && /^\| /' \
	    "$TOP/README.md"
}

# Fails with the lines only one side has; $1 names the comparison.
same_set() {
	local what=$1 a=$2 b=$3 only
	if [ -z "$a" ] || [ -z "$b" ]; then
		fail "$what: one side is empty (the extraction broke?)"
		return
	fi
	only=$(comm -23 <(sort -u <<<"$a") <(sort -u <<<"$b") | tr '\n' ' ')
	[ -z "$only" ] || fail "$what: only in the first: $only"
	only=$(comm -13 <(sort -u <<<"$a") <(sort -u <<<"$b") | tr '\n' ' ')
	[ -z "$only" ] || fail "$what: only in the second: $only"
}

# The rendered manual as plain text.
render() {
	mandoc -Tascii -Owidth=200 "$MAN" | sed "s/.\x08//g"
}

# --- the manual renders cleanly, with mandoc and with groff (man-db) ---
for tool in mandoc man; do
	command -v $tool >/dev/null ||
	    fail "$tool is not installed (tests/deps.sh installs it)"
done
mandoc -Tlint -Wwarning "$MAN" >"$T/lint" 2>&1
expect_empty "$T/lint" "mandoc -Tlint"
MANWIDTH=80 man --warnings=all -l "$MAN" 2>"$T/groff" >/dev/null
expect_empty "$T/groff" "groff warnings"

# --- SYNOPSIS is the usage text, form for form, word for word ---
# One line per form: a line that does not start with the program's name
# continues the form above it.
forms() {
	sed 's/^usage://; s/^[[:space:]]*//' | tr -s ' ' | awk '
	    /^bastion-stdio/ { if (f != "") print f; f = $0; next }
	    NF { f = f " " $0 }
	    END { if (f != "") print f }'
}
"$BIN" </dev/null >"$T/out" 2>"$T/usage"
expect_eq $? 2 "status without operands"
expect_empty "$T/out" "stdout without operands"
expect_match "$T/usage" '^usage: bastion-stdio ' "usage text"
usage=$(forms <"$T/usage")
synopsis=$(render | awk '/^[A-Z]/{ on = ($0 == "SYNOPSIS"); next } on' |
    forms)
expect_eq "$synopsis" "$usage" "SYNOPSIS against usage()"

# --- the same options in getopt(), the usage text and the manual ---
letters() { grep -o '[A-Za-z]' | sort -u; }
getopt_letters=$(sed -n 's/.*getopt(argc, argv, "\([^"]*\)").*/\1/p' \
    "$TOP/src/main.c" | letters)
usage_letters=$(grep -oE '\[-[A-Za-z]+' <<<"$usage" | cut -c3- | letters)
man_letters=$(man_section DESCRIPTION | sed -n 's/^\.It Fl \([A-Za-z]\).*/\1/p')
same_set "options: getopt() against usage()" "$getopt_letters" "$usage_letters"
same_set "options: getopt() against the manual" "$getopt_letters" "$man_letters"

# --- the same keywords in src/config.c, the manual and README.md ---
table=$(sed -n '/keywords\[\] = {/,/^};/p' "$TOP/src/config.c")
src_keywords=$(sed -n 's/^[[:space:]]*{ "\([A-Za-z]*\)".*/\1/p' <<<"$table")
man_keywords=$(man_section CONFIGURATION |
    sed -n 's/^\.It Cm \([A-Za-z]*\).*/\1/p')
readme_keywords=$(readme_table '### Keywords' |
    sed -n 's/^| `\([A-Za-z]*\)` |.*/\1/p')
same_set "keywords: src/config.c against the manual" \
    "$src_keywords" "$man_keywords"
same_set "keywords: src/config.c against README.md" \
    "$src_keywords" "$readme_keywords"

# --- numeric ranges, and the defaults cfg_finish() applies ---
finish=$(sed -n '/^cfg_finish(/,/^}/p' "$TOP/src/config.c")
while read -r kw field lo hi; do
	text=$(man_keyword_text "$kw")
	case $text in
	*"from $lo to $hi"*) ;;
	*) fail "manual: $kw does not say \"from $lo to $hi\"" ;;
	esac
done < <(sed -n 's/^[[:space:]]*{ "\([A-Za-z]*\)",[[:space:]]*NUM(\([a-z_]*\), \([0-9]*\), \([0-9]*\)) },.*/\1 \2 \3 \4/p' <<<"$table")
while read -r kw field num; do
	# numbers only for NUM() keywords: a flag's 0 reads "no"
	def=$(sed -n -e "s/^[[:space:]]*o->$field = LOG_\([A-Z0-9]*\);.*/\1/p" \
	    -e "s/^[[:space:]]*o->$field = xstrdup(\"\([^\"]*\)\");.*/\1/p" \
	    <<<"$finish")
	[ -n "$def" ] || [ "$num" != NUM ] || def=$(sed -n \
	    "s/^[[:space:]]*o->$field = \([0-9][0-9]*\);.*/\1/p" <<<"$finish")
	[ -n "$def" ] || continue
	case $(man_keyword_text "$kw") in
	*"default is $def"*) ;;
	*) fail "manual: $kw does not say \"default is $def\"" ;;
	esac
	row=$(readme_table '### Keywords' | grep -F "| \`$kw\` |")
	case $(awk -F'|' '{ print $4 }' <<<"$row") in
	*"$def"*) ;;
	*) fail "README.md: the default of $kw is not $def: $row" ;;
	esac
done < <(sed -n 's/^[[:space:]]*{ "\([A-Za-z]*\)",[[:space:]]*\([A-Z]*\).*[(]\([a-z_]*\)[),].*/\1 \3 \2/p' <<<"$table")

# --- every value the parser takes for Cloud and LogLevel is named ---
for c in $(sed -n 's/^[[:space:]]*{ "\(Azure[A-Za-z]*\)",.*/\1/p' \
    "$TOP/src/cloud.c"); do
	case $(man_keyword_text Cloud) in
	*" $c "*) ;;
	*) fail "manual: Cloud does not name $c" ;;
	esac
done
for l in $(sed -n '/level_names\[\] = {/,/};/p' "$TOP/src/log.c" |
    grep -o '"[A-Z0-9]*"' | tr -d '"'); do
	case $(man_keyword_text LogLevel) in
	*" $l "*) ;;
	*) fail "manual: LogLevel does not name $l" ;;
	esac
done

# --- the same exit statuses in src/misc.h, the manual and README.md ---
src_status=$(sed -n 's/^[[:space:]]*EXIT_[A-Z_]* = \([0-9]*\).*/\1/p' \
    "$TOP/src/misc.h")
man_status=$(man_section 'EXIT STATUS' | sed -n 's/^\.It \([0-9][0-9]*\)$/\1/p')
readme_status=$(readme_table '### Exit status' |
    sed -n 's/^| \([0-9][0-9]*\) |.*/\1/p')
same_set "exit statuses: src/misc.h against the manual" \
    "$src_status" "$man_status"
same_set "exit statuses: src/misc.h against README.md" \
    "$src_status" "$readme_status"
