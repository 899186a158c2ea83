# The shell completions in completions/ offer, in bash, zsh and fish
# alike: the subcommands and the options of each form of the usage text,
# the keywords of src/config.c for -o (with the values of Cloud,
# LogLevel, Credential and DeviceCode, and files for CAFile and LogFile),
# files for -F, Host names without wildcards from the bastion-stdio
# configuration files and ~/.ssh/config for HOST, and a port.  bash runs
# here, non-interactive, with COMP_* set as bash sets them; fish answers
# "complete -C"; zsh runs in a pseudo-terminal (tests/lib/zsh_complete.zsh).

C=$TOP/completions

# A home of our own, with an ssh configuration and a bastion-stdio one.
export HOME=$T/home
unset XDG_CONFIG_HOME
mkdir -p "$HOME/.ssh" "$HOME/.config/bastion-stdio" "$T/xdg/bastion-stdio" \
    "$T/files"
cat >"$HOME/.ssh/config" <<'EOF'
Host web1 web2 *.prod !bad
	User azureuser
host=jump
HostName not-a-host
	Host "quoted"
Match host matched
EOF
printf 'Host *\n\tBastion x\nHost db-1 db-?\n' \
    >"$HOME/.config/bastion-stdio/config"
printf 'Host xdg-only\n' >"$T/xdg/bastion-stdio/config"
printf 'Host other-1 other-*\n' >"$T/other.conf"
touch "$T/files/cert-a.pem" "$T/files/cert-b.pem" "$T/files/log.txt"

# What the sources accept, sorted as the results are.
sorted() { tr ' ' '\n' | grep -v '^$' | LC_ALL=C sort -u | tr '\n' ' ' |
    sed 's/ $//'; }
# One line per form of the usage text: its name ("main" for HOST PORT),
# "host" if it takes a HOST, optional ("[HOST [PORT]]") or not, else
# "none", and its options.
"$BIN" </dev/null >/dev/null 2>"$T/usage"
usage_forms=$(sed 's/^usage://; s/^[[:space:]]*//' "$T/usage" | awk '
    $1 == "bastion-stdio" {
	line = ($2 ~ /^[a-z]/) ? $2 : "main"
	line = line ($0 ~ /(^|[[ ])HOST( |\]|$)/ ? " host" : " none")
	for (i = 2; i <= NF; i++)
		if ($i ~ /^\[-/)
			for (j = 3; j <= length($i); j++)
				if (substr($i, j, 1) ~ /[A-Za-z]/)
					line = line " -" substr($i, j, 1)
	print line
    }')
commands=$(awk '$1 != "main" { print $1 }' <<<"$usage_forms" | sorted)
lo_commands=$(tr ' ' '\n' <<<"$commands" | grep '^lo' | sorted)
options=$(awk '$1 == "main" { $1 = $2 = ""; print }' <<<"$usage_forms" |
    sorted)
credentials=$(sed -n '/^credential_name(/,/^}/p' "$TOP/src/config.c" |
    grep -o '"[a-z-]*"' | tr -d '"' | sorted)
keywords=$(sed -n '/keywords\[\] = {/,/^};/p' "$TOP/src/config.c" |
    sed -n 's/^[[:space:]]*{ "\([A-Za-z]*\)".*/\1/p' | sorted)
log_keywords=$(tr ' ' '\n' <<<"$keywords" | grep '^Log' | sorted)
levels=$(sed -n '/level_names\[\] = {/,/};/p' "$TOP/src/log.c" |
    grep -o '"[A-Z0-9]*"' | tr -d '"' | sorted)
clouds=$(sed -n 's/^[[:space:]]*{ "\(Azure[A-Za-z]*\)",.*/\1/p' \
    "$TOP/src/cloud.c" | sorted)
[ -n "$options" ] && [ -n "$keywords" ] && [ -n "$levels" ] &&
    [ -n "$clouds" ] && [ -n "$credentials" ] ||
    fail "cannot read the options, keywords, levels, clouds or credentials"

# Each case: the line before the cursor, then what is offered, reduced
# to the part after any "Keyword=" or directory.  "~ a !b" means "a is
# offered and b is not", where the machine's own files may add more or
# zsh offers options when no operand is left.
cases=(
	"bastion-stdio -"			"$options"
	"bastion-stdio -o "			"$keywords"
	"bastion-stdio -o Log"			"$log_keywords"
	"bastion-stdio -vqo Con"		"ConnectTimeout"
	"bastion-stdio -oLo"			"$log_keywords"
	"bastion-stdio -o LogLevel="		"$levels"
	"bastion-stdio -o loglevel=DEBUG"	"DEBUG1 DEBUG2 DEBUG3"
	"bastion-stdio -o Cloud=Azure"		"$clouds"
	"bastion-stdio -o Credential="		"$credentials"
	"bastion-stdio -o DeviceCode="		"no yes"
	"bastion-stdio -o StartVm="		"no yes"
	"bastion-stdio -o ConnectTimeout="	""
	"bastion-stdio -o CAFile=$T/files/c"	"~ cert-a.pem cert-b.pem !log.txt"
	"bastion-stdio -o LogFile=$T/files/l"	"~ log.txt !cert-a.pem"
	"bastion-stdio -F $T/files/"		"~ cert-a.pem cert-b.pem log.txt"
	"bastion-stdio -F no"			"~ none"
	"bastion-stdio -F $T/other.conf "	"jump other-1 quoted web1 web2"
	"bastion-stdio -vF $T/other.conf "	"jump other-1 quoted web1 web2"
	"bastion-stdio -F none "		"jump quoted web1 web2"
	"bastion-stdio -F none w"		"web1 web2"
	"bastion-stdio -F none -- "		"jump quoted web1 web2"
	"bastion-stdio "			"~ $commands db-1 jump quoted web1 web2
	    !db-? !*.prod !bad !not-a-host !matched !xdg-only !other-1"
	"bastion-stdio lo"			"~ $lo_commands"
	"bastion-stdio -F none l"		""
	"bastion-stdio -q -o ArmEndpoint=https://arm.example:443 web1 "	"22"
	"bastion-stdio web1 22 "		"~ !22 !web1 !jump"
)
# Each subcommand: its name, its options, and its operands: HOST and
# PORT as in the main form, or none.
while read -r form takes opts; do
	[ "$form" = main ] && continue
	cases+=("bastion-stdio ${form:0:2}" "~ $form"
	    "bastion-stdio $form -" "$(sorted <<<"$opts")")
	if [ "$takes" = host ]; then
		cases+=("bastion-stdio $form "
		    "~ db-1 jump quoted web1 web2 !db-? !*.prod !22 !$form"
		    "bastion-stdio $form -F none w"	"web1 web2"
		    "bastion-stdio $form -vF $T/other.conf "
		    "jump other-1 quoted web1 web2"
		    "bastion-stdio $form -q web1 "	"22"
		    "bastion-stdio $form web1 22 "	"~ !22 !web1 !jump")
	else
		cases+=("bastion-stdio $form " "~ !web1 !jump !22 !$form")
	fi
	case " $opts " in
	*" -o "*) cases+=("bastion-stdio $form -o Log" "$log_keywords") ;;
	esac
done <<<"$usage_forms"
# The same with XDG_CONFIG_HOME set: its file replaces ~/.config's.
xdg_cases=(
	"bastion-stdio "			"~ xdg-only web1 !db-1"
)

normalise() {
	tr ' ' '\n' | sed 's/=$//; s/^-o\([A-Z]\)/\1/; s/^.*=//; s#^.*/##' |
	    sorted
}

# Compares results (one line per case, in order) with the cases.
check() {	# shell name, then the cases array's name
	local sh=$1 i=0 got want w words
	local -n list=$2
	while IFS= read -r got; do
		want=${list[i + 1]}
		got=$(normalise <<<"$got")
		if [[ $want == "~ "* ]]; then
			read -r -d "" -a words <<<"${want#"~ "}" || true
			for w in "${words[@]}"; do
				if [[ $w == !* ]]; then
					! grep -qxF -- "${w#!}" <<<"${got// /$'\n'}" ||
					    fail "$sh: '${list[i]}' offers ${w#!}: $got"
				else
					grep -qxF -- "$w" <<<"${got// /$'\n'}" ||
					    fail "$sh: '${list[i]}' does not offer $w: $got"
				fi
			done
		else
			[ "$got" = "$want" ] ||
			    fail "$sh: '${list[i]}': expected '$want', got '$got'"
		fi
		i=$((i + 2))
	done
	[ "$i" = "${#list[@]}" ] ||
	    fail "$sh: $((i / 2)) results for $((${#list[@]} / 2)) cases"
}

lines_of() {
	local -n l=$1
	local i
	for ((i = 0; i < ${#l[@]}; i += 2)); do
		printf '%s\n' "${l[i]}"
	done
}

# One shell: its syntax check, then both sets of cases through its
# completer, which reads lines and prints one result line for each.
try_shell() {	# shell, script, completer
	if ! command -v "$1" >/dev/null; then
		fail "$1 is not installed (tests/deps.sh installs it)"
		return
	fi
	"$1" -n "$C/$2" || fail "$1 -n completions/$2"
	check "$1" cases < <(lines_of cases | $3)
	check "$1" xdg_cases < <(lines_of xdg_cases |
	    XDG_CONFIG_HOME=$T/xdg $3)
}

# bash: set COMP_LINE, COMP_POINT, COMP_WORDS and COMP_CWORD as bash
# does (its words break at = and : too), call the function, read
# COMPREPLY.
bash_complete() {
	local line
	while IFS= read -r line; do
		COMP_LINE=$line
		COMP_POINT=${#line}
		read -r -a COMP_WORDS <<<"${line//[=:]/ & }"
		[[ $line == *' ' ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		_bastion_stdio bastion-stdio "${COMP_WORDS[COMP_CWORD]}" \
		    "${COMP_WORDS[COMP_CWORD - 1]}"
		echo "${COMPREPLY[*]}"
	done
}
. "$C/bastion-stdio.bash"
complete -p bastion-stdio >/dev/null 2>&1 ||
    fail "bash: nothing registered for bastion-stdio"
try_shell bash bastion-stdio.bash bash_complete

# fish: complete -C, one process for all the lines.
fish_complete() {
	local lines
	mapfile -t lines
	fish --no-config -c 'source $argv[1]
	    for l in $argv[2..-1]
	        echo (complete -C $l | string replace -r "\t.*" "")
	    end' "$C/bastion-stdio.fish" "${lines[@]}"
}
try_shell fish bastion-stdio.fish fish_complete

# zsh: the real completion system in a pseudo-terminal.
zsh_complete() {
	local lines
	mapfile -t lines
	timeout 60 zsh -f "$TOP/tests/lib/zsh_complete.zsh" "$C" "${lines[@]}"
}
try_shell zsh _bastion-stdio zsh_complete
