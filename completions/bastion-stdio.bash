# bash completion for bastion-stdio(1).
#
# Self-contained: it uses nothing from the bash-completion package, which
# only has to load it (make install puts it where that package looks).
#
# A subcommand is the first argument, as in main.c.  To add one, add it
# to _bastion_stdio_commands, give its options in
# _bastion_stdio_command_options, and, if it takes operands, define
# _bastion_stdio_cmd_NAME: called with the operands before the cursor as
# arguments and the current word in $cur, it sets the caller's cands.

_bastion_stdio_commands=(login logout doctor config-ssh)
declare -gA _bastion_stdio_command_options=(
	[main]="-F -o -q -v -V"
	[login]="-F -o -q -v"
	[logout]=""
	[doctor]="-F -o -q -v"
	[config-ssh]="-F -o -q -v"
)
_bastion_stdio_keywords=(ArmCacheTime ArmEndpoint AuthorityHost Bastion CAFile Cloud
    ConnectTimeout Credential DeviceCode FrameSize LogFile LogLevel
    LoginClientId ManagedIdentityClientId ManagedIdentityObjectId
    ManagedIdentityResourceId PingInterval StartTimeout StartVm
    TargetResourceGroup
    TargetResourceId TargetSubscription Tenant)
_bastion_stdio_clouds=(AzureCloud AzureUSGovernment AzureChinaCloud)
_bastion_stdio_levels=(QUIET FATAL ERROR INFO VERBOSE DEBUG1 DEBUG2 DEBUG3)
_bastion_stdio_credentials=(environment workload-identity managed-identity
    login azure-cli device-code)

# The main form: HOST, then PORT.
_bastion_stdio_cmd_main() {
	case $# in
	0) mapfile -t cands < <(compgen -W "$(_bastion_stdio_hosts "$conf")" \
	    -- "$cur") ;;
	1) mapfile -t cands < <(compgen -W 22 -- "$cur") ;;
	esac
}

# doctor: the same operands, both optional.
_bastion_stdio_cmd_doctor() {
	_bastion_stdio_cmd_main "$@"
}

# Host names without wildcards from the bastion-stdio configuration
# files ($1: the -F argument, if any) and from ~/.ssh/config.
_bastion_stdio_hosts() {
	local f files=()
	case $1 in
	none) ;;
	"~/"*) files+=("$HOME/${1#"~/"}") ;;
	?*) files+=("$1") ;;
	*)
		if [[ ${XDG_CONFIG_HOME-} == /* ]]; then
			files+=("$XDG_CONFIG_HOME/bastion-stdio/config")
		else
			files+=("$HOME/.config/bastion-stdio/config")
		fi
		files+=(/etc/bastion-stdio/config) ;;
	esac
	files+=("$HOME/.ssh/config")
	for f in "${files[@]}"; do
		[ -r "$f" ] && [ -f "$f" ] && cat -- "$f"
	done | awk '
	    { sub(/^[ \t]+/, "") }
	    tolower($0) !~ /^host[ \t=]/ { next }
	    {
		sub(/^[^ \t=]+[ \t]*=?[ \t]*/, "")
		gsub(/"/, "")
		for (i = 1; i <= NF; i++)
			if ($i !~ /[*?!]/)
				print $i
	    }' | sort -u
}

# The argument of -o so far ($1): a keyword, or after "Keyword=" a
# value; $2 is put back in front (for "-oKeyword").  Sets the caller's
# cands, nospace and filenames.
_bastion_stdio_keyword() {
	local key value values=
	if [[ $1 != *=* ]]; then
		mapfile -t cands < <(compgen -W \
		    "${_bastion_stdio_keywords[*]/%/=}" -- "$1")
		nospace=1
	else
		key=${1%%=*}
		value=${1#*=}
		case ${key,,} in
		cloud) values=${_bastion_stdio_clouds[*]} ;;
		loglevel) values=${_bastion_stdio_levels[*]} ;;
		credential) values=${_bastion_stdio_credentials[*]} ;;
		devicecode|startvm) values="yes no" ;;
		cafile | logfile) filenames=1 ;;
		esac
		if [ -n "$filenames" ]; then
			mapfile -t cands < <(compgen -f -- "$value")
		else
			mapfile -t cands < <(compgen -W "$values" -- "$value")
		fi
		cands=("${cands[@]/#/$key=}")
	fi
	cands=("${cands[@]/#/$2}")
}

_bastion_stdio() {
	local line cur words=() operands=() want= conf= w opt c i
	local cands=() nospace= filenames= dashdash= pre form=main

	# The words before the cursor, from the line itself: COMP_WORDS is
	# split at '=' and ':' too, which Keyword=Value and URLs hold.  No
	# -r, so that "a\ b" stays one word.
	line=${COMP_LINE:0:COMP_POINT}
	# shellcheck disable=SC2162
	read -a words <<<"$line"
	cur=
	if [[ $line != *[[:space:]] ]] && [ ${#words[@]} -gt 1 ]; then
		cur=${words[-1]}
		unset 'words[-1]'
	fi

	# A subcommand only as the first argument.
	i=1
	if [ ${#words[@]} -gt 1 ] &&
	    [[ " ${_bastion_stdio_commands[*]} " == *" ${words[1]} "* ]]; then
		form=${words[1]}
		i=2
	fi

	# Options, their arguments and operands, as getopt(3) sees them.
	for w in "${words[@]:i}"; do
		if [ -n "$want" ]; then
			[ "$want" = F ] && conf=$w
			want=
		elif [ -n "$dashdash" ] || [[ $w != -?* ]]; then
			operands+=("$w")
		elif [ "$w" = -- ]; then
			dashdash=1
		else
			opt=${w#-}
			while [ -n "$opt" ]; do
				c=${opt:0:1}
				opt=${opt:1}
				case $c in F | o) ;; *) continue ;; esac
				if [ -z "$opt" ]; then
					want=$c
				elif [ "$c" = F ]; then
					conf=$opt
				fi
				break
			done
		fi
	done

	if [ "$want" = F ]; then
		mapfile -t cands < <(compgen -f -- "$cur"
		    compgen -W none -- "$cur")
		filenames=1
	elif [ "$want" = o ]; then
		_bastion_stdio_keyword "$cur" ""
	elif [ -z "$dashdash" ] && [[ $cur == -o?* ]]; then
		_bastion_stdio_keyword "${cur#-o}" -o
	elif [ -z "$dashdash" ] && [[ $cur == -* ]]; then
		mapfile -t cands < <(compgen -W \
		    "${_bastion_stdio_command_options[$form]}" -- "$cur")
	elif declare -F "_bastion_stdio_cmd_$form" >/dev/null; then
		"_bastion_stdio_cmd_$form" "${operands[@]}"
	fi
	# the first argument may also be a subcommand
	if [ ${#words[@]} = 1 ] && [[ $cur != -* ]]; then
		mapfile -t -O ${#cands[@]} cands < <(compgen -W \
		    "${_bastion_stdio_commands[*]}" -- "$cur")
	fi

	[ -n "$nospace" ] && compopt -o nospace 2>/dev/null
	[ -n "$filenames" ] && compopt -o filenames 2>/dev/null
	# bash replaces only what follows the last word-break character
	pre=${cur%"${cur##*[${COMP_WORDBREAKS-}]}"}
	COMPREPLY=("${cands[@]#"$pre"}")
}

complete -F _bastion_stdio bastion-stdio
